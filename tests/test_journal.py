"""The study's journal on the volume: segments, the local cache, readers and writers, epochs and fencing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from hooked_volume import HookedVolume
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hpo.errors import JournalError, JournalFencedError
from hpo.journal import VolumeJournalBackend, _epochs, open_storage
from hpo.layout import StudyLayout
from hpo.volume import DirectoryVolume, ObjectInfo, Volume

optuna.logging.set_verbosity(optuna.logging.WARNING)


class CountingVolume(DirectoryVolume):
    """A real directory volume that counts listings (and records their prefixes) and reads."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lists = 0
        self.listed: list[str] = []
        self.reads = 0

    def list(self, prefix: str) -> list[ObjectInfo]:
        self.lists += 1
        self.listed.append(prefix)
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


def test_one_segment_per_flush_named_by_its_first_log_and_epoch(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    storage = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "cache")
    assert storage.journal is not None and storage.epoch == storage.journal.epoch == 1
    token = storage.journal._epoch.token  # type: ignore[union-attr]
    _run_trials(storage.optuna, 1)
    storage.flush()
    storage.flush()  # nothing pending: no empty segment
    _run_trials(storage.optuna, 1)
    storage.flush()
    names = [info.key.rsplit("/", 1)[1] for info in volume.list("hpo/s/journal/") if "/epochs/" not in info.key]
    assert len(names) == 2 and names[0] == f"000000000000-e00000001-{token}.jsonl"
    first_count = len(volume.read_bytes(f"hpo/s/journal/{names[0]}").splitlines())
    assert names[1] == f"{first_count:012d}-e00000001-{token}.jsonl"
    assert [i.key for i in volume.list("hpo/s/journal/epochs/")] == [
        f"hpo/s/journal/epochs/00000001-{token}-from-000000000000.json"
    ]


def test_the_writer_lists_the_journal_only_when_it_opens_and_the_markers_per_flush(tmp_path: Path) -> None:
    volume = CountingVolume(tmp_path / "vol")
    storage = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "cache")
    assert volume.listed == ["hpo/s/journal/"]
    for _ in range(5):
        _run_trials(storage.optuna, 2)
        storage.flush()
    assert volume.listed == ["hpo/s/journal/"] + ["hpo/s/journal/epochs/"] * 5
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


def test_a_second_writer_fences_the_first_at_its_next_flush(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    one = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "a")
    _run_trials(one.optuna, 1)
    one.flush()
    two = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "b")
    assert two.epoch is not None and one.epoch is not None and two.epoch > one.epoch
    _run_trials(one.optuna, 1)
    with pytest.raises(JournalFencedError, match=r"study 's'.*newer epoch \(2-") as info:
        one.flush()  # the controller flushes before acting: it acts on nothing
    assert isinstance(info.value, JournalError) and info.value.exit_code == 3
    with pytest.raises(JournalFencedError):
        one.flush()  # and every later flush refuses too
    study = _run_trials(two.optuna, 2)
    two.flush()
    assert len(study.trials) == 3
    assert len(open_storage(volume, "s", cache_dir=tmp_path / "fresh").load_study("s").trials) == 3


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
    names = sorted(info.key.rsplit("/", 1)[1] for info in volume.list("hpo/s/journal/") if "/epochs/" not in info.key)
    compactions = [n for n in names if n.startswith("range-")]
    assert len(compactions) == 2 and len(names) - len(compactions) == 12  # segments are kept
    reader = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / "fresh")
    assert reader.segment_reads == 2 + 2  # two ranges of five segments each, then the two segments after them
    trials = optuna.load_study(study_name="s", storage=JournalStorage(reader)).trials
    assert len(trials) == 12
    # A cache that is behind the compaction takes only what it lacks from it.
    again = VolumeJournalBackend(volume, "s", cache_dir=tmp_path / "fresh")
    assert again.segment_reads == 0
    assert len(optuna.load_study(study_name="s", storage=JournalStorage(again)).trials) == 12


# -- epochs: a contender paused at each step -------------------------------------------------

J = "hpo/s/journal/"


class Journals:
    """Writers and readers of study "s" over one volume, each with its own cache (another machine)."""

    def __init__(self, volume: Volume, tmp_path: Path) -> None:
        self.volume = volume
        self.tmp_path = tmp_path
        self.opened = 0

    def _cache(self, name: str | None) -> Path:
        self.opened += 1
        return self.tmp_path / (name or f"cache-{self.opened}")

    def writer(self, name: str | None = None, volume: Volume | None = None, **kwargs: Any) -> VolumeJournalBackend:
        return VolumeJournalBackend(volume or self.volume, "s", writer=True, cache_dir=self._cache(name), **kwargs)

    def reader(self, name: str | None = None, **kwargs: Any) -> VolumeJournalBackend:
        return VolumeJournalBackend(self.volume, "s", cache_dir=self._cache(name), **kwargs)

    def fresh(self) -> list[dict[str, object]]:
        """What a reader on a new machine sees."""
        return self.reader().read_logs(0)


def _put(writer: VolumeJournalBackend, *names: str) -> None:
    writer.append_logs([{"op_code": 10, "log": name} for name in names])
    writer.flush()


def _seen(logs: list[dict[str, object]]) -> list[object]:
    return [entry["log"] for entry in logs]


def _segments_at(volume: Volume, first: int) -> list[str]:
    return [i.key for i in volume.list(J) if i.key.startswith(f"{J}{first:012d}")]


def test_writers_take_ever_newer_epochs_and_mark_where_they_start(tmp_path: Path) -> None:
    journals = Journals(DirectoryVolume(tmp_path / "vol"), tmp_path)
    a = journals.writer()
    _put(a, "a0", "a1", "a2")
    b = journals.writer()
    assert (a.epoch, b.epoch) == (1, 2)
    assert journals.reader().epoch is None
    layout = StudyLayout("s")
    markers = [layout.parse_journal_key(i.key) for i in journals.volume.list(J + "epochs/")]
    assert [(m.epoch, m.number) for m in markers if m] == [(1, 0), (2, 3)]  # B started after A's three logs


def test_a_journal_written_before_epochs_opens_and_continues(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    layout = StudyLayout("s")
    volume.write_bytes(layout.journal_segment(0), b'{"op_code":10,"log":"old0"}\n{"op_code":10,"log":"old1"}\n')
    volume.write_bytes(layout.journal_compaction(2), b'{"op_code":10,"log":"old0"}\n{"op_code":10,"log":"old1"}\n')
    volume.write_bytes(layout.journal_segment(2), b'{"op_code":10,"log":"old2"}\n')
    journals = Journals(volume, tmp_path)
    warm = journals.reader("warm")
    assert _seen(warm.read_logs(0)) == ["old0", "old1", "old2"]
    writer = journals.writer()
    assert writer.epoch == 1
    _put(writer, "new3")
    assert _seen(journals.fresh()) == ["old0", "old1", "old2", "new3"]
    assert _seen(journals.reader("warm").read_logs(0)) == ["old0", "old1", "old2", "new3"]


def test_a_superseded_writer_is_fenced_and_nothing_it_wrote_after_the_takeover_is_read(
    volume: Volume, tmp_path: Path
) -> None:
    journals = Journals(volume, tmp_path)
    a = journals.writer()
    _put(a, "a0", "a1")
    b = journals.writer()  # A is paused here: B opens with a newer epoch, starting at log 2
    a.append_logs([{"op_code": 10, "log": "a2"}, {"op_code": 10, "log": "a3"}])
    with pytest.raises(JournalFencedError, match=r"study 's'.*newer epoch \(2-.*from journal log 2"):
        a.flush()
    assert a.fenced and _segments_at(volume, 2)  # A's segment is on the volume, but void
    with pytest.raises(JournalFencedError):
        a.flush()
    with pytest.raises(JournalFencedError):
        a.append_logs([{"op_code": 10, "log": "a4"}])
    _put(b, "b2")
    assert _seen(journals.fresh()) == ["a0", "a1", "b2"]
    assert _seen(b.read_logs(0)) == ["a0", "a1", "b2"]


def test_a_segment_flushed_between_the_newcomers_listing_and_its_marker_is_void(
    volume: Volume, tmp_path: Path
) -> None:
    journals = Journals(volume, tmp_path)
    a = journals.writer()
    _put(a, "a0", "a1")
    paused = HookedVolume(volume)
    # B has listed the journal but not yet left its marker: A flushes, and its check passes.
    paused.pause_after("list", J, lambda: _put(a, "a2", "a3"))
    b = journals.writer(volume=paused)
    assert paused.pending_hooks() == 0 and not a.fenced
    assert _seen(b.read_logs(0)) == ["a0", "a1"]
    with pytest.raises(JournalFencedError):
        a.flush()  # its next flush, nothing pending: fenced before it can act again
    _put(b, "b2")
    assert len(_segments_at(volume, 2)) == 2  # A's and B's: two objects, never one written twice
    assert _seen(journals.fresh()) == ["a0", "a1", "b2"]


def test_when_the_newcomer_writes_first_and_the_old_writer_second_at_one_position_the_newcomer_wins(
    volume: Volume, tmp_path: Path
) -> None:
    journals = Journals(volume, tmp_path)
    a = journals.writer()
    _put(a, "a0")
    b = journals.writer()
    _put(b, "b1")
    a.append_logs([{"op_code": 10, "log": "a1"}])
    with pytest.raises(JournalFencedError):
        a.flush()
    assert len(_segments_at(volume, 1)) == 2
    assert _seen(journals.fresh()) == ["a0", "b1"]
    _put(b, "b2")
    assert _seen(journals.fresh()) == ["a0", "b1", "b2"]


def test_a_compaction_by_the_old_writer_after_the_newcomers_start_is_void(volume: Volume, tmp_path: Path) -> None:
    journals = Journals(volume, tmp_path)
    a = journals.writer(compact_every=2)
    _put(a, "a0")
    paused = HookedVolume(volume)
    # B paused after its listing: A flushes a1, passes its check and compacts logs 0..1.
    paused.pause_after("list", J, lambda: _put(a, "a1"))
    b = journals.writer(volume=paused)
    assert [i.key for i in volume.list(J) if "range-" in i.key]  # A's compaction of 2 logs is there
    _put(b, "b1", "b2")
    assert _seen(journals.fresh()) == ["a0", "b1", "b2"]


def test_a_compaction_that_ends_where_the_newcomer_starts_stands(volume: Volume, tmp_path: Path) -> None:
    journals = Journals(volume, tmp_path)
    a = journals.writer(compact_every=2)
    _put(a, "a0")
    _put(a, "a1")  # compacts logs 0..1
    b = journals.writer()
    _put(b, "b2")
    reader = journals.reader()
    assert _seen(reader.read_logs(0)) == ["a0", "a1", "b2"]
    assert reader.segment_reads == 2  # the compaction, then B's segment


def test_two_writers_that_took_the_same_epoch_number_are_ordered_by_their_tokens(
    volume: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = iter(["aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(_epochs, "new_token", lambda: next(tokens))
    journals = Journals(volume, tmp_path)
    paused = HookedVolume(volume)
    other: list[VolumeJournalBackend] = []
    # A listed an empty journal; before A leaves its marker, B opens whole: both take epoch 1.
    paused.pause_after("list", J, lambda: other.append(journals.writer()))
    a = journals.writer(volume=paused)
    (b,) = other
    assert a.epoch == b.epoch == 1  # B took token aaaaaaaa, A bbbbbbbb: A is the newer
    _put(a, "a0")
    b.append_logs([{"op_code": 10, "log": "b0"}])
    with pytest.raises(JournalFencedError, match=r"epoch \(1-bbbbbbbb\)"):
        b.flush()
    assert _seen(journals.fresh()) == ["a0"]


def test_a_warm_reader_and_a_fresh_reader_agree_after_a_takeover(volume: Volume, tmp_path: Path) -> None:
    journals = Journals(volume, tmp_path)
    now = [0.0]
    a = journals.writer()
    _put(a, "a0")
    reader = journals.reader("warm", refresh_interval=1.0, clock=lambda: now[0])
    assert _seen(reader.read_logs(0)) == ["a0"]
    paused = HookedVolume(volume)

    def a_flushes_and_the_reader_reads_it() -> None:
        _put(a, "a1")  # B has listed but left no marker yet: A's check passes
        reader.refresh()  # the reader reads A's segment, not yet void

    paused.pause_after("list", J, a_flushes_and_the_reader_reads_it)
    b = journals.writer(volume=paused)
    _put(b, "b1")
    now[0] = 5.0
    assert _seen(reader.read_logs(0)) == ["a0", "b1"] == _seen(journals.fresh())
    # The same cache, reopened (a warm cache on the reader's machine), agrees too.
    assert _seen(journals.reader("warm").read_logs(0)) == ["a0", "b1"]
    _put(b, "b2")
    now[0] = 10.0
    assert _seen(reader.read_logs(0)) == ["a0", "b1", "b2"] == _seen(journals.fresh())


def test_a_reader_that_showed_logs_a_takeover_voided_asks_for_a_reopen(volume: Volume, tmp_path: Path) -> None:
    journals = Journals(volume, tmp_path)
    now = [0.0]
    a = journals.writer()
    _put(a, "a0")
    reader = journals.reader("shown", refresh_interval=1.0, clock=lambda: now[0])
    paused = HookedVolume(volume)

    def a_flushes_and_the_reader_shows_it() -> None:
        _put(a, "a1")
        now[0] += 2
        assert _seen(reader.read_logs(0)) == ["a0", "a1"]  # handed to Optuna before B's marker landed

    paused.pause_after("list", J, a_flushes_and_the_reader_shows_it)
    b = journals.writer(volume=paused)
    _put(b, "b1")
    now[0] += 2
    with pytest.raises(JournalError, match="reopen"):
        reader.read_logs(0)
    assert _seen(journals.reader("shown").read_logs(0)) == ["a0", "b1"]  # reopened on its cache: rebuilt


def test_a_reader_follows_the_newcomers_segments_by_name(volume: Volume, tmp_path: Path) -> None:
    journals = Journals(volume, tmp_path)
    now = [0.0]
    a = journals.writer()
    _put(a, "a0")
    reader = journals.reader(refresh_interval=1.0, clock=lambda: now[0])
    assert _seen(reader.read_logs(0)) == ["a0"]
    b = journals.writer()
    _put(b, "b1")
    _put(b, "b2")
    c = journals.writer()
    _put(c, "c3")
    now[0] = 2.0
    assert _seen(reader.read_logs(0)) == ["a0", "b1", "b2", "c3"]


def test_the_controller_sees_the_fence_through_its_storage(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    old = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "old")
    _run_trials(old.optuna, 2)
    old.flush()
    new = open_storage(volume, "s", writer=True, cache_dir=tmp_path / "new")
    study = optuna.load_study(study_name="s", storage=old.optuna)
    study.ask()
    with pytest.raises(JournalFencedError):
        old.flush()
    assert len(new.load_study("s").trials) == 2
    assert len(open_storage(volume, "s", cache_dir=tmp_path / "fresh").load_study("s").trials) == 2


# -- a warm cache never trusts a damaged journal --------------------------------------------


def _three_segments(journals: Journals, cache: str, **kwargs: Any) -> list[str]:
    writer = journals.writer(cache, **kwargs)
    _put(writer, "x0", "x1")
    _put(writer, "x2", "x3")
    _put(writer, "x4")
    return sorted(i.key for i in journals.volume.list(J) if "/epochs/" not in i.key and "range-" not in i.key)


@pytest.mark.parametrize("damage", ["truncated at a line", "truncated mid-line", "deleted", "grown"])
def test_damage_to_an_old_segment_is_noticed_by_a_warm_cache(volume: Volume, tmp_path: Path, damage: str) -> None:
    journals = Journals(volume, tmp_path)
    segments = _three_segments(journals, "warm")
    middle = segments[1]
    data = volume.read_bytes(middle)
    if damage == "truncated at a line":
        volume.write_bytes(middle, data.splitlines(keepends=True)[0])
    elif damage == "truncated mid-line":
        volume.write_bytes(middle, data[:-3])
    elif damage == "deleted":
        volume.delete(middle)
    else:
        volume.write_bytes(middle, data + b'{"op_code":10,"log":"extra"}\n')
    for opener in (journals.writer, journals.reader):
        with pytest.raises(JournalError) as info:
            opener("warm")  # the cache covers the damaged segment: it is checked, never trusted
        message = str(info.value)
        assert volume.url in message and J in message and "\n" not in message


def test_a_warm_cache_over_a_damaged_segment_that_a_compaction_covers_is_rebuilt(
    volume: Volume, tmp_path: Path
) -> None:
    journals = Journals(volume, tmp_path)
    segments = _three_segments(journals, "warm", compact_every=2)
    volume.delete(segments[0])  # the compaction still holds its logs
    reopened = journals.writer("warm")
    assert reopened.segment_reads == 2  # rebuilt from the volume: the compaction and the last segment
    assert _seen(reopened.read_logs(0)) == ["x0", "x1", "x2", "x3", "x4"]


def test_an_intact_warm_cache_is_trusted_without_reads(tmp_path: Path) -> None:
    journals = Journals(DirectoryVolume(tmp_path / "vol"), tmp_path)
    _three_segments(journals, "warm")
    again = journals.reader("warm")
    assert again.segment_reads == 0 and len(list(again.read_logs(0))) == 5


def test_a_cache_sidecar_from_an_older_version_is_rebuilt(tmp_path: Path) -> None:
    journals = Journals(DirectoryVolume(tmp_path / "vol"), tmp_path)
    writer = journals.writer("old")
    _put(writer, "x0")
    meta = next((tmp_path / "old").glob("*/s.journal.meta.json"))
    meta.write_text(
        json.dumps({"volume": journals.volume.url, "logs": 1, "bytes": 14, "last_segment": "x", "last_segment_size": 14})
    )
    again = journals.reader("old")
    assert again.segment_reads == 1 and _seen(again.read_logs(0)) == ["x0"]


# -- the quick path of log checking: it only ever agrees with the full check ---------------


def _intermediate(**fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"op_code": 7, "worker_id": "w", "trial_id": 0, "step": 1, "intermediate_value": 0.5}
    entry.update(fields)
    return {name: value for name, value in entry.items() if value is not _DROP}


_DROP = object()


@pytest.mark.parametrize(
    "entry",
    [
        _intermediate(op_code=7.0),
        _intermediate(op_code=True),
        _intermediate(worker_id=_DROP),
        _intermediate(worker_id=1),
        _intermediate(trial_id=True),
        _intermediate(trial_id=-1),
        _intermediate(trial_id=1.0),
        _intermediate(trial_id="1"),
        _intermediate(step=_DROP),
        _intermediate(step=True),
        _intermediate(step=1.0),
        _intermediate(intermediate_value=_DROP),
        _intermediate(intermediate_value=True),
        _intermediate(intermediate_value="0.5"),
        _intermediate(intermediate_value=[0.5]),
    ],
)
def test_an_intermediate_value_log_with_one_field_wrong_is_refused(entry: dict[str, Any]) -> None:
    from hpo.journal._validate import _plainly_fine, log_problem, parse_logs

    assert not _plainly_fine(entry)
    assert log_problem(entry) is not None
    assert parse_logs([json.dumps(entry).encode()]) is None


@pytest.mark.parametrize("value", [None, 0, -3, 0.25, float("nan"), float("inf")])
def test_an_intermediate_value_log_takes_the_quick_path_and_the_full_check_agrees(value: Any) -> None:
    from hpo.journal._validate import _check, _plainly_fine, parse_logs

    entry = _intermediate(intermediate_value=value, extra="ignored by the replay")
    assert _plainly_fine(entry)
    _check(entry)  # raises if the full check disagrees
    parsed = parse_logs([json.dumps(entry).encode()])
    assert parsed is not None and parsed[0].keys() == entry.keys()


@pytest.mark.parametrize(
    "line",
    [
        b'{"op_code":7}',
        b"{}",
        b" {}",
        b"[1]",
        b"7",
        b"",
        b"{",
        b'{"a":"\xff"}',  # not UTF-8
        b'{"a":"\xed\xa0\x80"}',  # a lone surrogate, which json.loads lets through
        b'{"a":"\\ud800"}',
        b"\xef\xbb\xbf{}",  # a UTF-8 byte-order mark
        '{"a": 1}'.encode("utf-16-le"),  # json.loads guesses UTF-16 from the NUL bytes
        '{"a": 1}'.encode("utf-16"),
        b'{"a":NaN}',
        b'{"a":1} x',
        b"[" * 100_000,
    ],
)
def test_load_line_answers_as_json_loads_does(line: bytes) -> None:
    from hpo.journal._validate import load_line

    def outcome(parse: Any) -> Any:
        try:
            return ("value", json.dumps(parse(line)))
        except Exception as exc:  # noqa: BLE001  the kind of failure is what is compared
            return ("raises", type(exc))

    assert outcome(load_line) == outcome(json.loads)


def test_a_distribution_parsed_once_still_refuses_a_value_it_does_not_fit() -> None:
    from hpo.journal._validate import log_problem

    distribution = optuna.distributions.distribution_to_json(optuna.distributions.CategoricalDistribution(["a", "b"]))
    entry = {
        "op_code": 5,
        "worker_id": "w",
        "trial_id": 0,
        "param_name": "x",
        "param_value_internal": 1,
        "distribution": distribution,
    }
    assert log_problem(entry) is None
    assert log_problem({**entry, "param_value_internal": 2}) == "'param_value_internal' = 2 does not fit its distribution"
    assert log_problem(entry) is None
    for _ in range(2):
        problem = log_problem({**entry, "distribution": '{"name": "Nope"}'})
        assert problem is not None and problem.startswith("'distribution' is not a distribution (")
