"""Reading a worker's ``log.jsonl`` as it grows, with the event files' own reader.

A worker's log has the hazards of an attempt's event file (a torn last line,
garbage, a line without end, a symlink out of the volume) and the same cure:
:class:`~hpo.events.EventTail` already reads only the new bytes, in bounded
chunks, side by side for many files (:meth:`~hpo.events.EventTail.poll_many`),
and summarises garbage in one warning naming the key. :class:`LogTail` keeps
all of that and changes only what a line must be: one of the worker log
entries of :mod:`hpo.pool._protocol`, never trusted beyond their models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from hpo.events import Event, EventTail, validate_line
from hpo.pool._protocol import WORKER_LOG_ENTRY, BootEntry, EndEntry, ExitEntry, StartEntry
from hpo.volume import Volume

log = logging.getLogger(__name__)

LogEntry = BootEntry | StartEntry | EndEntry | ExitEntry


def parse_entry(line: bytes) -> LogEntry:
    """One worker log line as its entry; ``ValueError`` with a short reason if it is not one."""
    return validate_line(WORKER_LOG_ENTRY, line)


class LogTail(EventTail):
    """An :class:`~hpo.events.EventTail` whose lines are worker log entries.

    :meth:`feed` (which the inherited reading calls with each chunk) keeps the
    entries in :attr:`entries` and returns no events, so every inherited
    method works unchanged; :meth:`poll_entries` and :meth:`poll_many_entries`
    hand out what was read. Lines are split as for events (:meth:`EventTail.whole_lines`).
    """

    def __init__(self, volume: Volume, key: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(volume, key, clock=clock)
        self.entries: list[LogEntry] = []

    def feed(self, data: bytes) -> list[Event]:
        for raw in self.whole_lines(data):
            try:
                self.entries.append(parse_entry(raw))
            except ValueError as exc:
                self._bad(str(exc), counted=True)
        return []

    def take(self) -> list[LogEntry]:
        """The entries read since the last take."""
        entries, self.entries = self.entries, []
        return entries

    def poll_entries(self, known_size: int | None = None) -> list[LogEntry]:
        """The entries appended since the last poll (none read if ``known_size`` says it has not grown)."""
        self.poll(known_size)
        return self.take()

    def read_all(self) -> list[LogEntry]:
        """Everything from here to the end of the file (adoption reads a log whole)."""
        self.poll()
        while self.behind:
            self.poll()
        return self.take()

    @staticmethod
    def poll_many_entries(tails: Sequence[LogTail], sizes: Mapping[str, int | None]) -> list[list[LogEntry]]:
        """:meth:`EventTail.poll_many` for logs: only grown ones are read, their reads side by side."""
        EventTail.poll_many(tails, sizes)
        return [tail.take() for tail in tails]
