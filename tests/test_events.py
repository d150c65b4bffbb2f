"""The event tail: only new bytes, torn last lines read whole later, garbage skipped with one summary per file."""

from __future__ import annotations

import logging

import pytest

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
