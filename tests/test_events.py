"""The event tail: only new bytes, torn last lines read whole later, garbage skipped with one summary per file.

And :meth:`EventTail.poll_many`, the poll of many tails with their reads side by side, which must
give exactly what polling them one by one gives, and consume nothing when a read fails.
"""

from __future__ import annotations

import logging

import pytest
from memory_volume import MemoryVolume

from hpo import events as events_module
from hpo.errors import VolumeError
from hpo.events import DoneEvent, EventTail, ReportEvent, encode_event, parse_event
from hpo.volume import Volume

KEY = "hpo/s/trials/0/attempts/0/events.jsonl"


def test_reads_only_new_bytes(volume: Volume) -> None:
    tail = EventTail(volume, KEY)
    assert tail.poll() == []  # no file yet
    volume.append_bytes(KEY, encode_event(ReportEvent(step=1, value=0.5)))
    first = tail.poll()
    assert [(e.type, e.step, e.value) for e in first] == [("report", 1, 0.5)]
    offset = tail.offset
    assert tail.poll() == []
    assert tail.poll(known_size=offset) == []  # unchanged size: no read at all
    volume.append_bytes(KEY, encode_event(ReportEvent(step=2, value=0.4)))
    assert [e.step for e in tail.poll()] == [2]


def test_torn_last_line_is_read_whole_on_a_later_poll(volume: Volume) -> None:
    line = encode_event(ReportEvent(step=3, value=0.25))
    volume.append_bytes(KEY, encode_event(ReportEvent(step=2, value=0.3)) + line[:10])
    tail = EventTail(volume, KEY)
    assert [e.step for e in tail.poll()] == [2]
    assert tail.poll() == []  # still torn
    volume.append_bytes(KEY, line[10:])
    assert [(e.step, e.value) for e in tail.poll()] == [(3, 0.25)]
    assert tail.garbage_lines == 0


def test_garbage_lines_are_logged_with_file_and_line_and_skipped(volume: Volume, caplog: pytest.LogCaptureFixture) -> None:
    volume.append_bytes(
        KEY,
        encode_event(ReportEvent(step=1, value=1.0))
        + b"this is not json\n"
        + b'{"type": "report", "step": -1, "value": 2}\n'
        + b'{"type": "report", "step": 2, "value": NaN}\n'
        + b'{"type": "teleport"}\n'
        + b"\n"
        + encode_event(DoneEvent(value=0.5)),
    )
    tail = EventTail(volume, KEY)
    with caplog.at_level(logging.WARNING):
        events = tail.poll()
    assert [e.type for e in events] == ["report", "done"]
    assert tail.garbage_lines == 4
    messages = [r.getMessage() for r in caplog.records]
    # One summary per file and poll, never one line per bad line: the count, the first line numbers, the first reason.
    assert len(messages) == 1
    assert KEY in messages[0] and "skipped 4 lines" in messages[0] and "lines 2, 3, 4, 5" in messages[0]


def test_event_round_trip() -> None:
    event = parse_event(encode_event(ReportEvent(step=7, value=0.125)))
    assert isinstance(event, ReportEvent) and event.step == 7 and event.value == 0.125
    with pytest.raises(ValueError):
        parse_event(b'{"type": "done"}')


def _report(step: int) -> bytes:
    return encode_event(ReportEvent(step=step, value=1.0 / step))


def _files(volume: Volume) -> list[str]:
    """Event files in every state a poll meets: grown, unchanged, torn, missing, several chunks long."""
    keys = [f"hpo/s/trials/{n}/attempts/0/events.jsonl" for n in range(6)]
    volume.append_bytes(keys[0], _report(1) + _report(2))
    volume.append_bytes(keys[1], _report(1))
    volume.append_bytes(keys[2], _report(1) + _report(2)[:7])  # torn
    # keys[3] does not exist (yet)
    volume.append_bytes(keys[4], b"".join(_report(s) for s in range(1, 200)))  # many chunks of READ_CHUNK
    volume.append_bytes(keys[5], b"junk\n" + _report(1))
    return keys


@pytest.mark.parametrize("workers", [None, 4])
def test_poll_many_gives_what_polling_one_by_one_gives(
    volume: Volume, workers: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "READ_CHUNK", 256)  # several reads for the long file, the same code
    keys = _files(volume)
    one_by_one = [EventTail(volume, key) for key in keys]
    together = [EventTail(volume, key) for key in keys]
    for round_ in range(3):
        sizes = volume.sizes(keys)
        expected = [tail.poll(sizes[tail.key]) for tail in one_by_one]
        got = EventTail.poll_many(together, sizes, workers=workers)
        assert got == expected
        assert [t.offset for t in together] == [t.offset for t in one_by_one]
        assert [t.garbage_lines for t in together] == [t.garbage_lines for t in one_by_one]
        volume.append_bytes(keys[round_], _report(10 + round_))  # one more grows
        if round_ == 0:
            volume.append_bytes(keys[2], _report(2)[7:])  # the torn line ends
            volume.append_bytes(keys[3], _report(1))  # the missing file appears
    assert together[4].offset == volume.size(keys[4])  # the long file was read to its end, chunk by chunk


def test_poll_many_reads_a_tail_given_twice_once(volume: Volume) -> None:
    volume.append_bytes(KEY, _report(1))
    tail = EventTail(volume, KEY)
    first, second = EventTail.poll_many([tail, tail], volume.sizes([KEY]), workers=4)
    assert [e.step for e in first] == [1] and second == []


class FailingVolume(MemoryVolume):
    """Memory whose reads of one key fail the way an unreachable S3 endpoint does, until told otherwise."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing: str | None = failing

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if key == self.failing:
            raise VolumeError(f"{self.url}: cannot reach the S3 endpoint to read {key!r}")
        return super().read_range(key, offset, length)


@pytest.mark.parametrize("workers", [1, 4])
def test_a_failed_read_raises_before_any_tail_has_consumed_a_byte(workers: int) -> None:
    keys = [f"hpo/s/trials/{n}/attempts/0/events.jsonl" for n in range(5)]
    volume = FailingVolume(keys[3])
    for key in keys:
        volume.append_bytes(key, _report(1))
    tails = [EventTail(volume, key) for key in keys]
    with pytest.raises(VolumeError, match="cannot reach"):
        EventTail.poll_many(tails, volume.sizes(keys), workers=workers)
    assert [tail.offset for tail in tails] == [0] * 5  # nothing read was dropped: the next poll has it all
    volume.failing = None
    assert [[e.step for e in events] for events in EventTail.poll_many(tails, volume.sizes(keys), workers=workers)] == [[1]] * 5
