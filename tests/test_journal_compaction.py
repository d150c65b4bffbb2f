"""The journal's compaction in tiers of ranges, and a backend that keeps the journal as bytes, not parsed twice."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
from hooked_volume import HookedVolume
from memory_volume import MemoryVolume
from optuna.storages import JournalStorage

from hpo.errors import JournalError
from hpo.journal import VolumeJournalBackend
from hpo.journal._epochs import Epoch, Marker, Piece, superseding
from hpo.layout import StudyLayout
from hpo.volume import DirectoryVolume, ObjectInfo, Volume

optuna.logging.set_verbosity(optuna.logging.WARNING)

J = "hpo/s/journal/"
LAYOUT = StudyLayout("s")


class Counting(HookedVolume):
    """Counts the journal objects read and the bytes written through it."""

    def __init__(self, inner: Volume) -> None:
        super().__init__(inner)
        self.reads: list[str] = []
        self.written = 0

    def read_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return super().read_bytes(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        self.written += len(data)
        super().write_bytes(key, data)

    def list(self, prefix: str) -> list[ObjectInfo]:
        return super().list(prefix)


def _put(writer: VolumeJournalBackend, *names: str) -> None:
    writer.append_logs([{"op_code": 10, "log": name} for name in names])
    writer.flush()


def _seen(logs: Any) -> list[object]:
    return [entry["log"] for entry in logs]


def _names(volume: Volume, prefix: str) -> list[str]:
    return [i.key[len(J) :] for i in volume.list(J) if i.key[len(J) :].startswith(prefix)]


def _journal_size(volume: Volume) -> int:
    return sum(i.size for i in volume.list(J) if LAYOUT.parse_journal_key(i.key).kind == "segment")  # type: ignore[union-attr]


def test_segments_are_merged_in_tiers_and_each_log_is_rewritten_once_per_tier(tmp_path: Path) -> None:
    volume = Counting(MemoryVolume())
    writer = VolumeJournalBackend(volume, "s", writer=True, cache_dir=tmp_path / "w", compact_every=4)
    for n in range(64):
        _put(writer, f"x{2 * n}", f"x{2 * n + 1}")
    ranges = [LAYOUT.parse_journal_key(J + name) for name in _names(volume, "range-")]
    spans = sorted((k.number, k.end) for k in ranges if k is not None)
    assert len(spans) == 16 + 4 + 1  # 64 segments: 16 ranges of 4, 4 of 16, one of 64
    assert (0, 128) in spans
    for position in range(128):  # every log is in one range per tier: log_4(64) = 3 rewrites
        assert sum(1 for first, end in spans if first <= position < end) == 3  # type: ignore[operator]
    size = _journal_size(volume)
    assert volume.written - size * 4 < 1000  # segments + 3 tiers; the rest is the epoch marker
    assert writer.bytes_written == volume.written


def test_a_cold_open_reads_one_object_per_tier_it_needs(tmp_path: Path) -> None:
    volume = Counting(MemoryVolume())
    writer = VolumeJournalBackend(volume, "s", writer=True, cache_dir=tmp_path / "w", compact_every=4)
    for n in range(64 + 2 * 16 + 4 + 3):
        _put(writer, f"x{n}")
    volume.reads.clear()
    reader = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / "cold")
    # one range of 64 segments, two of 16, one of 4, then three segments
    assert len(volume.reads) == reader.segment_reads == 1 + 2 + 1 + 3
    assert _seen(reader.read_logs(0)) == [f"x{n}" for n in range(103)]


def test_a_reader_probing_by_name_while_the_writer_compacts_never_sees_a_hole(tmp_path: Path) -> None:
    volume = MemoryVolume()
    now = [0.0]
    writer = VolumeJournalBackend(volume, "s", writer=True, cache_dir=tmp_path / "w", compact_every=3)
    _put(writer, "x0")
    reader = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / "r", refresh_interval=1.0, clock=lambda: now[0])
    storage = JournalStorage(reader)
    seen = _seen(reader.read_logs(0))
    for n in range(1, 40):
        _put(writer, f"x{n}", f"y{n}")
        now[0] += 1.0
        seen += _seen(reader.read_logs(len(seen)))
        cold = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / f"cold{n}")
        assert seen == _seen(cold.read_logs(0)) == ["x0"] + [f"{c}{k}" for k in range(1, n + 1) for c in "xy"]
    assert _names(volume, "range-") and storage is not None


def test_an_upto_compaction_of_an_older_version_still_opens_and_is_built_on(tmp_path: Path) -> None:
    volume = Counting(MemoryVolume())
    logs = [b'{"op_code":10,"log":"old%d"}\n' % n for n in range(4)]
    volume.write_bytes(LAYOUT.journal_segment(0, 1, "aaaaaaaa"), logs[0] + logs[1])
    volume.write_bytes(LAYOUT.journal_segment(2, 1, "aaaaaaaa"), logs[2])
    volume.write_bytes(LAYOUT.journal_compaction(3, 1, "aaaaaaaa"), logs[0] + logs[1] + logs[2])
    volume.write_bytes(LAYOUT.journal_segment(3, 1, "aaaaaaaa"), logs[3])
    volume.write_json(LAYOUT.journal_epoch_marker(1, "aaaaaaaa", 0), {})
    volume.reads.clear()
    reader = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / "r")
    assert len(volume.reads) == 2  # the compaction and the segment after it
    writer = VolumeJournalBackend(volume, "s", writer=True, cache_dir=tmp_path / "w", compact_every=2)
    _put(writer, "new4")  # merges the older writer's last segment and its own; then with the compaction (2 segments)
    _put(writer, "new5")
    assert [name.split("-e")[0] for name in _names(volume, "range-")] == [
        "range-000000000000-000000000005",
        "range-000000000003-000000000005",
    ]
    expected = [f"old{n}" for n in range(4)] + ["new4", "new5"]
    volume.reads.clear()
    assert _seen(VolumeJournalBackend(volume, "s", cache_dir=tmp_path / "cold").read_logs(0)) == expected
    assert len(volume.reads) == 2  # the range of logs 0..4, then the last segment
    assert _seen(reader.read_logs(0))[:4] == expected[:4]


def test_a_writer_after_a_reopen_goes_on_merging_where_the_last_one_stopped(tmp_path: Path) -> None:
    volume = MemoryVolume()
    first = VolumeJournalBackend(volume, "s", writer=True, cache_dir=tmp_path / "a", compact_every=2)
    for n in range(3):
        _put(first, f"x{n}")  # segments 0, 1 -> range [0, 2); segment 2 waits
    second = VolumeJournalBackend(volume, "s", writer=True, cache_dir=tmp_path / "b", compact_every=2)
    _put(second, "x3")  # merges the first writer's segment 2 with its own 3, then [0,2) with [2,4)
    spans = sorted((k.number, k.end) for k in (LAYOUT.parse_journal_key(J + n) for n in _names(volume, "range-")) if k)
    assert spans == [(0, 2), (0, 4), (2, 4)]
    reads = Counting(volume)
    VolumeJournalBackend(reads, "s", cache_dir=tmp_path / "cold")
    assert len(reads.reads) == 1


def test_the_voiding_rule_for_a_range_is_its_end_wherever_it_starts() -> None:
    old = Epoch(1, "aaaaaaaa")
    new = Epoch(2, "bbbbbbbb")
    piece = Piece("range", 4, 8, old, J + "range", 0)
    assert superseding([Marker(new, 8, "m")], piece) is None  # the newcomer read all of it
    assert superseding([Marker(new, 7, "m")], piece) is not None  # its last log may have been replaced
    assert superseding([Marker(new, 2, "m")], piece) is not None  # all of it after the newcomer's start
    assert superseding([Marker(Epoch(1, "aaaaaaaa"), 2, "m")], piece) is None  # its own epoch
    segment = Piece("segment", 4, None, old, J + "segment", 0)
    assert superseding([Marker(new, 4, "m")], segment) is not None
    assert superseding([Marker(new, 5, "m")], segment) is None


def test_a_range_the_fenced_writer_writes_after_the_newcomers_marker_is_ignored(tmp_path: Path) -> None:
    volume = MemoryVolume()
    a = VolumeJournalBackend(volume, "s", writer=True, cache_dir=tmp_path / "a", compact_every=2)
    _put(a, "a0")
    _put(a, "a1")  # range [0, 2) stands: B starts at 2
    _put(a, "a2")
    paused = HookedVolume(volume)
    # B lists the journal (logs 0..2), then A flushes a3 and merges [2, 4) and [0, 4) before B's marker lands.
    paused.pause_after("list", J, lambda: _put(a, "a3"))
    b = VolumeJournalBackend(paused, "s", writer=True, cache_dir=tmp_path / "b", compact_every=2)
    assert {"range-000000000002-000000000004", "range-000000000000-000000000004"} <= {
        name.split("-e")[0] for name in _names(volume, "range-")
    }
    _put(b, "b3")
    _put(b, "b4")
    expected = ["a0", "a1", "a2", "b3", "b4"]
    reads = Counting(volume)
    cold = VolumeJournalBackend(reads, "s", cache_dir=tmp_path / "cold")
    assert _seen(cold.read_logs(0)) == expected
    assert not [key for key in reads.reads if "range-000000000000-000000000004" in key and "-e00000001-" in key]
    with pytest.raises(JournalError):
        _put(a, "a4")  # fenced


def test_after_open_the_backend_holds_no_log_parsed_and_serves_any_from_its_bytes(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    writer = VolumeJournalBackend(volume, "s", writer=True, cache_dir=tmp_path / "w", compact_every=3)
    storage = JournalStorage(writer)
    study = optuna.create_study(study_name="s", storage=storage)
    for _ in range(20):
        trial = study.ask()
        trial.report(trial.suggest_float("x", 0, 1), 1)
        study.tell(trial, 0.5)
        writer.flush()
    assert writer.parsed == 0 and writer.log_count > 60
    for cache in ("cold", "cold"):  # a cold open, then a warm one
        reader = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / cache)
        trials = optuna.load_study(study_name="s", storage=JournalStorage(reader)).trials
        assert len(trials) == 20 and reader.parsed == 0
        # A second JournalStorage over the same backend, and a pickled copy, read from log 0 again.
        again = optuna.load_study(study_name="s", storage=JournalStorage(reader)).trials
        copy = pickle.loads(pickle.dumps(reader))
        assert [t.params for t in again] == [t.params for t in trials]
        assert len(list(copy.read_logs(0))) == reader.log_count
        assert [e["op_code"] for e in reader.read_logs(5)] == [e["op_code"] for e in list(writer.read_logs(0))[5:]]


def test_a_cached_line_damaged_past_the_first_is_read_again_from_the_volume(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    writer = VolumeJournalBackend(volume, "s", writer=True, cache_dir=tmp_path / "w")
    for n in range(5):
        _put(writer, f"x{2 * n}", f"x{2 * n + 1}")
    reader = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / "r")
    assert _seen(reader.read_logs(0)) == [f"x{n}" for n in range(10)]
    cache = reader.cache_path
    lines = cache.read_bytes().split(b"\n")
    lines[6] = b"[" + lines[6][1:]  # same size, no longer a log
    cache.write_bytes(b"\n".join(lines))
    warm = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / "r")
    assert warm.segment_reads == 0  # the sizes match: only reading the line can tell
    assert _seen(warm.read_logs(0)) == [f"x{n}" for n in range(10)]
    assert warm.segment_reads > 0  # read again from the volume, carrying on at log 6
