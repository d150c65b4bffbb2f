"""The study's journal on the volume: segments, the local cache, readers and writers."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hpo.errors import JournalError
from hpo.journal import VolumeJournalBackend, open_storage
from hpo.volume import DirectoryVolume, ObjectInfo

optuna.logging.set_verbosity(optuna.logging.WARNING)


class CountingVolume(DirectoryVolume):
    """A real directory volume that counts listings and reads."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lists = 0
        self.reads = 0

    def list(self, prefix: str) -> list[ObjectInfo]:
        self.lists += 1
        return super().list(prefix)

    def read_bytes(self, key: str) -> bytes:
        self.reads += 1
        return super().read_bytes(key)


def _run_trials(storage: optuna.storages.BaseStorage, n: int) -> optuna.Study:
    study = optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        trial.report(x, 1)
        study.tell(trial, x)
    return study


def test_a_study_written_by_one_controller_is_continued_by_the_next(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    first = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "cache-a")
    _run_trials(first.optuna, 3)
    first.flush()
    # Another machine: a fresh cache.
    second = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "cache-b")
    study = _run_trials(second.optuna, 2)
    second.flush()
    assert len(study.trials) == 5
    third = open_storage(volume, "s", cache_dir=tmp_path / "cache-a")
    assert len(third.load_study("s").trials) == 5


def test_the_cache_is_a_plain_optuna_journal_file(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    storage = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "cache")
    _run_trials(storage.optuna, 4)
    storage.flush()
    assert storage.journal is not None
    plain = JournalStorage(JournalFileBackend(str(storage.journal.cache_path)))
    trials = optuna.load_study(study_name="s", storage=plain).trials
    assert [t.intermediate_values for t in trials] == [{1: t.value} for t in trials]


def test_unflushed_logs_never_reach_the_volume_or_the_cache(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    storage = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "cache")
    _run_trials(storage.optuna, 2)
    storage.flush()
    _run_trials(storage.optuna, 3)  # a crash now: these were never flushed
    assert storage.journal is not None and storage.journal.pending > 0
    again = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "cache")
    assert len(again.load_study("s").trials) == 2


def test_one_segment_per_flush_named_by_its_first_log(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    storage = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "cache")
    _run_trials(storage.optuna, 1)
    storage.flush()
    storage.flush()  # nothing pending: no empty segment
    _run_trials(storage.optuna, 1)
    storage.flush()
    names = [info.key.rsplit("/", 1)[1] for info in volume.list("hpo/s/journal/")]
    assert len(names) == 2 and names[0] == "000000000000.jsonl"
    first_count = len(volume.read_bytes("hpo/s/journal/000000000000.jsonl").splitlines())
    assert names[1] == f"{first_count:012d}.jsonl"


def test_the_writer_lists_the_volume_only_when_it_opens(tmp_path: Path) -> None:
    volume = CountingVolume(tmp_path / "vol")
    storage = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "cache")
    assert volume.lists == 1
    for _ in range(5):
        _run_trials(storage.optuna, 2)
        storage.flush()
    assert volume.lists == 1
    assert volume.reads == 0  # every read served from memory


def test_a_reader_picks_up_new_segments_after_its_refresh_interval(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    writer = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "w")
    _run_trials(writer.optuna, 1)
    writer.flush()
    now = [0.0]
    backend = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / "r", refresh_interval=2.0, clock=lambda: now[0])
    reader = JournalStorage(backend)
    study = optuna.load_study(study_name="s", storage=reader)
    assert len(study.trials) == 1
    _run_trials(writer.optuna, 2)
    writer.flush()
    now[0] = 1.0
    assert len(study.trials) == 1  # not yet: refreshes are rate-limited
    now[0] = 2.5
    assert len(study.trials) == 3


def test_a_reader_cannot_write(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    reader = open_storage(volume, "s", cache_dir=tmp_path / "r")
    with pytest.raises(JournalError, match="read-only"):
        optuna.create_study(study_name="s", storage=reader.optuna)


def test_a_second_writer_cannot_overwrite_a_segment(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    one = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "a")
    two = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "b")
    _run_trials(one.optuna, 1)
    one.flush()
    _run_trials(two.optuna, 1)
    with pytest.raises(JournalError, match="another controller"):
        two.flush()


def test_a_cache_for_a_reset_volume_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    volume = DirectoryVolume(tmp_path / "vol")
    storage = open_storage(volume, "s", writer=True, cache_dir=cache)
    _run_trials(storage.optuna, 3)
    storage.flush()
    for info in volume.list("hpo/s/journal/"):
        volume.delete(info.key)
    fresh = open_storage(volume, "s", writer=True, cache_dir=cache)
    assert fresh.load_study("s") is None


def test_compaction_lets_a_fresh_reader_open_with_few_reads(tmp_path: Path) -> None:
    volume = CountingVolume(tmp_path / "vol")
    writer = VolumeJournalBackend(volume, "s", writer=True, cache_dir=tmp_path / "w", compact_every=5)
    storage = JournalStorage(writer)
    for _ in range(12):
        _run_trials(storage, 1)
        writer.flush()
    names = sorted(info.key.rsplit("/", 1)[1] for info in volume.list("hpo/s/journal/"))
    compactions = [n for n in names if n.startswith("upto-")]
    assert len(compactions) == 2 and len(names) - len(compactions) == 12  # segments are kept
    reader = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / "fresh")
    assert reader.segment_reads == 1 + 2  # the last compaction, then the two segments after it
    trials = optuna.load_study(study_name="s", storage=JournalStorage(reader)).trials
    assert len(trials) == 12
    # A cache that is behind the compaction takes only what it lacks from it.
    again = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / "fresh")
    assert again.segment_reads == 0
    assert len(optuna.load_study(study_name="s", storage=JournalStorage(again)).trials) == 12
