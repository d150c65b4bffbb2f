"""Events an attempt appends to its ``events.jsonl``, and the reader that tails them.

The file is line-oriented JSON, appended by one writer (the attempt) and read
by the controller while it grows. Two hazards shape the reader:

* a torn last line (the writer was killed mid-write, or the reader caught the
  write half done): it is left unread and read whole on a later poll;
* a garbage line (not JSON, not an event, or a field out of bounds): it is
  skipped and never stops the controller. Warnings are summarised per file
  (one line per poll that met garbage, at most one every
  :data:`WARN_INTERVAL` seconds, with the count and the first bad line
  numbers), so a pod writing a million garbage lines cannot flood stderr;
* a line longer than :data:`MAX_LINE_BYTES` (a pod writing without newlines):
  it is skipped as garbage without ever being held in memory whole; the file
  is read :data:`READ_CHUNK` bytes at a time.

The file is written by a pod that runs the user's code on a machine the
controller does not control, so every field is bounded here, where it is
read: numbers are finite and of their JSON type (no ``true`` for a step, no
``"1.5"`` for a value), integers fit in a double exactly, strings are short.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, TypeAdapter, ValidationError, field_validator

from hpo.errors import VolumeEscapeError, VolumeNotFoundError
from hpo.volume import Volume

log = logging.getLogger(__name__)

#: The longest line an event file may hold; a longer one is garbage (events are a few hundred bytes).
MAX_LINE_BYTES = 1 << 20
#: How much one read of an event file takes at most (more than a line, so every valid line fits).
READ_CHUNK = 4 << 20
#: How much one poll reads at most: a pod writing faster than we read cannot hold the controller in a poll.
MAX_POLL_BYTES = 64 << 20
#: Seconds between two garbage warnings about the same file (the first always comes at once).
WARN_INTERVAL = 60.0
#: The largest integer a step (or pid) may be: exact in a double, so JSON readers (the dashboard) agree.
MAX_INT = 2**53 - 1
#: The longest user attribute key, host name and error message an event may carry.
MAX_KEY_CHARS = 256
MAX_HOST_CHARS = 255
MESSAGE_MAX_CHARS = 2000
TRACEBACK_MAX_CHARS = 20_000
#: The most CPU seconds one attempt may claim (about 30 CPU-years).
MAX_CPU_SECONDS = 1e9
#: How deeply a user attribute's value may nest.
MAX_VALUE_DEPTH = 32


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


def _plain_json(value: Any, depth: int = 0) -> Any:
    """Check a user attribute's value: plain JSON, finite numbers, nesting at most :data:`MAX_VALUE_DEPTH`."""
    if depth > MAX_VALUE_DEPTH:
        raise ValueError(f"nests deeper than {MAX_VALUE_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ValueError(f"integers must be at most {MAX_INT} in size")
    if isinstance(value, list):
        for item in value:
            _plain_json(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _plain_json(item, depth + 1)
    return value


#: A JSON number (never a bool or a string), finite.
FiniteFloat = Annotated[float, Strict(), AfterValidator(_finite)]
#: A JSON integer (never a bool, a float or a string) from 0 to :data:`MAX_INT`.
Count = Annotated[int, Strict(), Field(ge=0, le=MAX_INT)]


class BaseEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")
    t: FiniteFloat = Field(default_factory=time.time)


class StartEvent(BaseEvent):
    """The attempt started running the objective."""

    type: Literal["start"] = "start"
    pid: Count
    host: Annotated[str, Field(max_length=MAX_HOST_CHARS)]
    resume_step: Count = 0


class ReportEvent(BaseEvent):
    """An intermediate value at a step (``trial.report``)."""

    type: Literal["report"] = "report"
    step: Count
    value: FiniteFloat


class CheckpointEvent(BaseEvent):
    """A checkpoint for ``step`` was written (atomically) to the trial's folder."""

    type: Literal["checkpoint"] = "checkpoint"
    step: Count


class UserAttrEvent(BaseEvent):
    """``trial.set_user_attr(key, value)`` on the pod: the controller records it on the trial."""

    type: Literal["user_attr"] = "user_attr"
    key: Annotated[str, Strict(), Field(min_length=1, max_length=MAX_KEY_CHARS)]
    value: Annotated[Any, AfterValidator(_plain_json)]


class FinalEvent(BaseEvent):
    """The last event of an attempt; it carries the CPU time the attempt used."""

    cpu_seconds: Annotated[FiniteFloat, Field(ge=0.0, le=MAX_CPU_SECONDS)] | None = None


class DoneEvent(FinalEvent):
    """The objective returned ``value``: the trial is complete."""

    type: Literal["done"] = "done"
    value: FiniteFloat


class PrunedEvent(FinalEvent):
    """The objective raised ``optuna.TrialPruned`` (or obeyed a prune order)."""

    type: Literal["pruned"] = "pruned"
    step: Count | None = None


class ErrorEvent(FinalEvent):
    """The objective raised: the trial fails with this message."""

    type: Literal["error"] = "error"
    message: Annotated[str, Strict()]
    traceback: Annotated[str, Strict()] = ""

    @field_validator("message")
    @classmethod
    def _short_message(cls, message: str) -> str:
        # It becomes a user attribute and a status line: fold and cut it, never refuse a verdict for its length.
        return one_line(message, MESSAGE_MAX_CHARS)

    @field_validator("traceback")
    @classmethod
    def _short_traceback(cls, text: str) -> str:
        return text if len(text) <= TRACEBACK_MAX_CHARS else "...\n" + text[-(TRACEBACK_MAX_CHARS - 4) :]


class PreemptedEvent(FinalEvent):
    """The attempt got SIGTERM without being told to stop: it may resume elsewhere."""

    type: Literal["preempted"] = "preempted"


class StoppedEvent(FinalEvent):
    """The attempt obeyed a stop order from ``control.json``."""

    type: Literal["stopped"] = "stopped"


#: The longest ``cause`` an :class:`InterruptedEvent` carries; longer ones are cut with "...".
CAUSE_MAX = 400


class InterruptedEvent(FinalEvent):
    """An infrastructure fault (the volume, the network) ended the attempt, not the objective.

    Like a preemption it is no verdict on the trial: a new attempt resumes it
    from its last checkpoint (and it counts against ``max_attempts``).
    ``cause`` is one short line, e.g. ``"volume: report at step 3: ...: No
    space left on device"``; the full traceback is in the attempt's log.
    """

    type: Literal["interrupted"] = "interrupted"
    cause: Annotated[str, Strict()]

    @field_validator("cause")
    @classmethod
    def _one_short_line(cls, cause: str) -> str:
        # Best-effort writers must never fail on a long message: fold and cut it rather than refuse it.
        cause = one_line(cause, CAUSE_MAX)
        if not cause:
            raise ValueError("cause must not be empty")
        return cause


def one_line(text: str, limit: int) -> str:
    """``text`` with its whitespace runs (newlines included) folded to one space, cut to ``limit`` characters."""
    folded = " ".join(text.split())
    return folded if len(folded) <= limit else folded[: limit - 3] + "..."


Event = Annotated[
    StartEvent | ReportEvent | CheckpointEvent | UserAttrEvent
    | DoneEvent | PrunedEvent | ErrorEvent | PreemptedEvent | StoppedEvent | InterruptedEvent,
    Field(discriminator="type"),
]
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)
_T = TypeVar("_T")

#: What one read of an event file gave: its bytes, None (no such file), or the volume's refusal.
_Read = bytes | VolumeEscapeError | None

#: Events after which an attempt has nothing more to say.
FINAL_TYPES = frozenset({"done", "pruned", "error", "preempted", "stopped", "interrupted"})


def encode_event(event: BaseEvent) -> bytes:
    """One event as one line of JSON, newline included."""
    return (event.model_dump_json(exclude_none=True) + "\n").encode()


def parse_event(line: bytes) -> Event:
    """Parse one line; raise ``ValueError`` with a short reason if it is not an event."""
    return validate_line(_EVENT, line)


def validate_line(adapter: TypeAdapter[_T], line: bytes) -> _T:
    """One JSON line a pod wrote, as ``adapter``'s type; ``ValueError`` with a short reason (where, why) if it is not."""
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        return adapter.validate_json(line)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(one_line(f"{where + ': ' if where else ''}{first['msg']}", 200)) from None


class _Garbage:
    """The bad lines of one file met since its last warning: how many, where, and why the first was bad."""

    SHOWN = 5  # line numbers a warning lists

    def __init__(self) -> None:
        self.count = 0
        self.lines: list[int] = []
        self.first_reason = ""

    def add(self, line: int, reason: str) -> None:
        if not self.count:
            self.first_reason = reason
        self.count += 1
        if len(self.lines) < self.SHOWN:
            self.lines.append(line)

    def message(self, key: str) -> str:
        numbers = ", ".join(map(str, self.lines)) + (", ..." if self.count > len(self.lines) else "")
        what = "line that is not an event" if self.count == 1 else "lines that are not events"
        noun = "line" if self.count == 1 else "lines"
        return f"{key}: skipped {self.count} {what} ({noun} {numbers}); line {self.lines[0]}: {self.first_reason}"


class EventTail:
    """Reads new events from one growing event file, a few bytes at a time.

    It remembers the offset of the first byte it has not consumed, so each poll
    reads only the new bytes (ranged reads of at most :data:`READ_CHUNK` bytes),
    and a torn last line stays unconsumed until its newline arrives. A line
    that grows past :data:`MAX_LINE_BYTES` without a newline is consumed as it
    comes and skipped as one garbage line once its newline arrives.

    Args:
        volume: The volume holding the file.
        key: The event file's key.
        clock: A monotonic clock for spacing garbage warnings (injectable for tests).
    """

    def __init__(self, volume: Volume, key: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.volume = volume
        self.key = key
        self.offset = 0
        self.lines_read = 0
        self.garbage_lines = 0
        self.warnings = 0
        self._clock = clock
        self._skipping = False  # inside an overlong line: drop bytes until its newline
        self._pending = _Garbage()
        self._last_warning: float | None = None
        #: True when the last poll stopped at :data:`MAX_POLL_BYTES` with more to read.
        self.behind = False
        #: True once the volume refused the file (it resolves outside the volume).
        self.refused = False

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data`` (the bytes from ``self.offset`` on) and return the whole events in it.

        Call :meth:`warn` afterwards to log what was skipped (``poll`` does).
        """
        events: list[Event] = []
        for raw in self.whole_lines(data):
            try:
                events.append(parse_event(raw))
            except ValueError as exc:
                self._bad(str(exc), counted=True)
        return events

    def whole_lines(self, data: bytes) -> Iterator[bytes]:
        """Consume ``data`` (the bytes from ``self.offset`` on): its whole, non-blank lines, to be parsed.

        A torn last line stays unread (the offset stops before it); a line
        longer than any a worker writes is skipped to its end and counted as
        bad. Lines are counted as they are handed out (a bad one's number is
        :attr:`lines_read`), so iterate to the end. A reader of other JSON
        lines (a warm worker's log) parses them its way.
        """
        start = 0
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                self.offset += len(data)
                return
            self._skipping = False
            self._bad(f"line longer than {MAX_LINE_BYTES} bytes")
            start = newline + 1
        end = data.rfind(b"\n")
        if end >= start:
            for raw in data[start : end + 1].split(b"\n")[:-1]:
                self.lines_read += 1
                if raw.strip():
                    yield raw
            start = end + 1
        if len(data) - start > MAX_LINE_BYTES:
            # A line already longer than any event, still without its newline: drop what we have of it.
            self._skipping = True
            start = len(data)
        self.offset += start

    def _bad(self, reason: str, *, counted: bool = False) -> None:
        if not counted:
            self.lines_read += 1
        self.garbage_lines += 1
        self._pending.add(self.lines_read, reason)

    def warn(self, *, force: bool = False) -> None:
        """Log one warning for the garbage met since the last one, unless one was logged under :data:`WARN_INTERVAL` ago."""
        if not self._pending.count:
            return
        now = self._clock()
        if not force and self._last_warning is not None and now - self._last_warning < WARN_INTERVAL:
            return
        log.warning("%s", self._pending.message(self.key))
        self.warnings += 1
        self._last_warning = now
        self._pending = _Garbage()

    def poll(self, known_size: int | None = None) -> list[Event]:
        """Read and return the events appended since the last poll (at most :data:`MAX_POLL_BYTES` of them).

        ``known_size`` (from a batched :meth:`Volume.sizes`) lets the caller
        skip the read when the file has not grown. :meth:`poll_many` polls
        many tails with their first reads in flight at once.
        """
        if not self.grown(known_size):
            self.warn()  # garbage held back by the interval is still told, once it has passed
            return []
        return self._consume(self._fetch())

    def grown(self, known_size: int | None) -> bool:
        """Whether a poll told ``known_size`` has anything to read (an unknown size may have)."""
        return known_size is None or known_size > self.offset

    def _fetch(self) -> _Read:
        """One ranged read from the first byte not consumed; it changes nothing in the tail (thread-safe)."""
        try:
            return self.volume.read_range(self.key, self.offset, READ_CHUNK)
        except VolumeNotFoundError:
            return None
        except VolumeEscapeError as exc:
            return exc

    def _consume(self, read: _Read) -> list[Event]:
        """Feed ``read`` (what :meth:`_fetch` returned), then read on while whole chunks keep coming."""
        events: list[Event] = []
        budget = MAX_POLL_BYTES
        self.behind = False
        while True:
            if read is None:
                break  # no file (yet)
            if isinstance(read, VolumeEscapeError):
                self._refused(str(read))
                break
            before = self.offset
            events.extend(self.feed(read))
            budget -= len(read)
            if len(read) < READ_CHUNK or self.offset == before:
                break  # the end of the file (or a torn last line: the rest comes later)
            if budget <= 0:
                self.behind = True  # more to read: the next poll goes on from here
                break
            read = self._fetch()
        self.warn()
        return events

    @staticmethod
    def poll_many(
        tails: Sequence[EventTail], sizes: Mapping[str, int | None], *, workers: int | None = None
    ) -> list[list[Event]]:
        """Poll every tail, as ``tail.poll(sizes.get(tail.key))`` one after another would, with the reads side by side.

        Each grown file's first read (usually its only one: :data:`READ_CHUNK`
        holds a poll's events) is in flight with up to ``workers`` others (default:
        the volume's :attr:`~hpo.volume.Volume.read_concurrency`), so a poll of 100
        grown files over S3 pays a few round trips, not 100. The bytes are then
        fed to the tails one by one in this thread, in order: if any read fails,
        it raises before a single tail has moved, and no event is consumed
        without being returned.

        Returns:
            The events of each tail, in the order of ``tails``.
        """
        grown = {id(tail): tail for tail in tails if tail.grown(sizes.get(tail.key))}
        if workers is None:
            workers = max((tail.volume.read_concurrency for tail in grown.values()), default=1)
        reads: dict[int, _Read]
        if workers > 1 and len(grown) > 1:
            with ThreadPoolExecutor(max_workers=min(workers, len(grown))) as pool:
                reads = dict(zip(grown, pool.map(EventTail._fetch, grown.values()), strict=True))
        else:
            reads = {ident: tail._fetch() for ident, tail in grown.items()}
        # A tail given twice is read once: its second turn polls on from where the first left it.
        return [
            tail._consume(reads.pop(id(tail))) if id(tail) in reads else tail.poll(sizes.get(tail.key))
            for tail in tails
        ]

    def _refused(self, reason: str) -> None:
        """The file is a symlink out of the volume: read nothing from it, and say so once."""
        if not self.refused:
            log.warning("%s", reason)
        self.refused = True


def drain(volume: Volume, key: str) -> list[Event]:
    """Every whole event in a file (none if it is missing)."""
    if not volume.exists(key):
        return []
    tail = EventTail(volume, key)
    events = tail.poll()
    while tail.behind:
        events.extend(tail.poll())
    tail.warn(force=True)
    return events
