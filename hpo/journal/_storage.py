"""Pick a study's Optuna storage: the volume's journal, or the RDB URL the study names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna import Study
from optuna.storages import BaseStorage, JournalStorage, RDBStorage

from hpo.errors import HpoError, JournalError
from hpo.journal._backend import VolumeJournalBackend
from hpo.volume import Volume


class CheckedJournalStorage(JournalStorage):
    """Optuna's journal storage whose replay of logs from the volume never escapes as a traceback.

    Each log is checked as it is read (:mod:`hpo.journal._validate`), but a
    log of the right shape can still make Optuna's replay raise (a future
    Optuna reading a field differently, say). A log this process wrote is
    replayed as Optuna does it, because Optuna answers its own requests that
    way (``DuplicatedStudyError`` for ``load_if_exists``, ``KeyError`` for a
    missing trial); any other log that makes the replay raise is a
    :class:`JournalError`, one line naming the study and the log's number.
    """

    def __init__(self, backend: VolumeJournalBackend, study: str) -> None:
        self._study_name = study
        super().__init__(backend)

    def _sync_with_backend(self) -> None:
        replay = self._replay_result
        for entry in self._backend.read_logs(replay.log_number_read):
            number = replay.log_number_read
            try:
                replay.apply_logs([entry])
            except HpoError:
                raise
            except Exception as exc:
                worker = entry.get("worker_id") if isinstance(entry, dict) else None
                if isinstance(worker, str) and worker.startswith(self._worker_id_prefix):
                    raise  # Optuna's answer to a request of this process
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
                raise JournalError(
                    f"study {self._study_name!r}: Optuna cannot replay journal log {number} ({detail}); "
                    "the journal on the volume is damaged"
                ) from None


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

    def load_study(self, name: str) -> Study | None:  # not optuna.Study: in this class `optuna` is the field
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
    return StudyStorage(CheckedJournalStorage(backend, study), backend)
