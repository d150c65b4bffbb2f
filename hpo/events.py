"""Events an attempt appends to its ``events.jsonl``, and the reader that tails them.

The file is line-oriented JSON, appended by one writer (the attempt) and read
by the controller while it grows. Two hazards shape the reader:

* a torn last line (the writer was killed mid-write, or the reader caught the
  write half done): it is left unread and read whole on a later poll;
* a garbage line (not JSON, or not an event): it is logged with the file and
  line number and skipped; it never stops the controller.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from hpo.errors import VolumeNotFoundError
from hpo.volume import Volume

log = logging.getLogger(__name__)


class BaseEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")
    t: float = Field(default_factory=time.time)


class StartEvent(BaseEvent):
    """The attempt started running the objective."""

    type: Literal["start"] = "start"
    pid: int
    host: str
    resume_step: int = 0


class ReportEvent(BaseEvent):
    """An intermediate value at a step (``trial.report``)."""

    type: Literal["report"] = "report"
    step: int = Field(ge=0)
    value: float

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("value must be finite")
        return value


class CheckpointEvent(BaseEvent):
    """A checkpoint for ``step`` was written (atomically) to the trial's folder."""

    type: Literal["checkpoint"] = "checkpoint"
    step: int = Field(ge=0)


class UserAttrEvent(BaseEvent):
    """``trial.set_user_attr(key, value)`` on the pod: the controller records it on the trial."""

    type: Literal["user_attr"] = "user_attr"
    key: str
    value: Any


class FinalEvent(BaseEvent):
    """The last event of an attempt; it carries the CPU time the attempt used."""

    cpu_seconds: float | None = None


class DoneEvent(FinalEvent):
    """The objective returned ``value``: the trial is complete."""

    type: Literal["done"] = "done"
    value: float


class PrunedEvent(FinalEvent):
    """The objective raised ``optuna.TrialPruned`` (or obeyed a prune order)."""

    type: Literal["pruned"] = "pruned"
    step: int | None = None


class ErrorEvent(FinalEvent):
    """The objective raised: the trial fails with this message."""

    type: Literal["error"] = "error"
    message: str
    traceback: str = ""


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
    cause: str

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
_EVENT = TypeAdapter(Event)

#: Events after which an attempt has nothing more to say.
FINAL_TYPES = frozenset({"done", "pruned", "error", "preempted", "stopped", "interrupted"})


def encode_event(event: BaseEvent) -> bytes:
    """One event as one line of JSON, newline included."""
    return (event.model_dump_json(exclude_none=True) + "\n").encode()


def parse_event(line: bytes) -> Event:
    """Parse one line; raise ``ValueError`` with a short reason if it is not an event."""
    try:
        return _EVENT.validate_json(line)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where + ': ' if where else ''}{first['msg']}") from None


class EventTail:
    """Reads new events from one growing event file, a few bytes at a time.

    It remembers the offset of the first byte it has not consumed, so each poll
    reads only the new bytes (a ranged read on S3), and a torn last line stays
    unconsumed until its newline arrives.
    """

    def __init__(self, volume: Volume, key: str) -> None:
        self.volume = volume
        self.key = key
        self.offset = 0
        self.lines_read = 0
        self.garbage_lines = 0

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data`` (the bytes from ``self.offset`` on) and return the whole events in it."""
        end = data.rfind(b"\n")
        if end < 0:
            return []
        events: list[Event] = []
        for raw in data[: end + 1].splitlines():
            self.lines_read += 1
            if not raw.strip():
                continue
            try:
                events.append(parse_event(raw))
            except ValueError as exc:
                self.garbage_lines += 1
                log.warning("%s: line %d: skipped, not an event (%s)", self.key, self.lines_read, exc)
        self.offset += end + 1
        return events

    def poll(self, known_size: int | None = None) -> list[Event]:
        """Read and return the events appended since the last poll.

        ``known_size`` (from a batched :meth:`Volume.sizes`) lets the caller
        skip the read when the file has not grown.
        """
        if known_size is not None and known_size <= self.offset:
            return []
        try:
            data = self.volume.read_from(self.key, self.offset)
        except VolumeNotFoundError:
            return []
        return self.feed(data)


def drain(volume: Volume, key: str) -> list[Event]:
    """Every whole event in a file (none if it is missing)."""
    if not volume.exists(key):
        return []
    return EventTail(volume, key).poll()
