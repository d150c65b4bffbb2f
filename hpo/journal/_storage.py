"""Pick a study's Optuna storage: the volume's journal, or the RDB URL the study names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage

from hpo.journal._backend import VolumeJournalBackend
from hpo.volume import Volume


@dataclass
class StudyStorage:
    """An Optuna storage plus the durability hook the controller needs."""

    optuna: BaseStorage
    journal: VolumeJournalBackend | None = None

    @property
    def epoch(self) -> int | None:
        """The journal writer's epoch (None for a reader or an RDB storage)."""
        return self.journal.epoch if self.journal is not None else None

    def flush(self) -> None:
        """Make every write so far durable on the volume (RDB writes already are).

        Raises:
            JournalFencedError: A controller with a newer epoch took the study
                over; the caller must stop at once and act on nothing.
        """
        if self.journal is not None:
            self.journal.flush()

    def load_study(self, name: str) -> optuna.Study | None:
        """The study if it exists in this storage, else None (without creating it)."""
        try:
            return optuna.load_study(study_name=name, storage=self.optuna)
        except KeyError:
            return None


def open_storage(
    volume: Volume,
    study: str,
    *,
    url: str | None = None,
    writer: bool = False,
    cache_dir: Path | None = None,
) -> StudyStorage:
    """Open the storage of ``study``.

    Args:
        volume: The study's volume (the journal lives under ``hpo/<study>/journal``).
        study: The study's name.
        url: An SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``); when given,
            Optuna's RDB storage is used instead of the journal.
        writer: True for the controller holding the lease.
        cache_dir: Override for the journal's local cache folder.
    """
    if url:
        return StudyStorage(RDBStorage(url))
    backend = VolumeJournalBackend(volume, study, writer=writer, cache_dir=cache_dir)
    return StudyStorage(JournalStorage(backend), backend)
