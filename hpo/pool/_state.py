"""What the pool knows of each live worker, and how a new controller rebuilds it from the volume.

The pool writes every assignment itself, so while it lives it knows them in
memory; from the workers it only reads their logs. A new controller (the
last one crashed) has neither: :func:`rebuild` reads one worker's
``assignment.json`` and log and says which attempt it runs, whether it was
told to stop, and which attempts it ran before (for the cost split).
Everything read is validated by the protocol's models first; nothing a
worker wrote can make the pool believe it runs an attempt the controller did
not assign to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from hpo.errors import HpoError, VolumeNotFoundError
from hpo.pool._ledger import Share, WorkerLedger
from hpo.pool._protocol import Assignment, EndEntry, StartEntry, assignment_key
from hpo.pool._tail import LogEntry, LogTail
from hpo.volume import Volume
from hpo.workers import AttemptRef, PoolWorker

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """An attempt assigned to a worker and not yet over.

    ``seq`` is its ``run`` assignment's (its log entries name it); ``stop_seq``
    the ``stop`` written for it, if any; ``kill_at`` (pool clock) when the
    worker is terminated if the attempt has not ended by then.
    """

    ref: AttemptRef
    seq: int
    assigned_at: float
    share: Share
    started: bool = False
    stop_seq: int | None = None
    kill_at: float | None = None


@dataclass
class WorkerState:
    """One live worker of the pool: the last listing of it, its assignments, its log, its attempt."""

    index: int
    worker: PoolWorker
    ledger: WorkerLedger
    tail: LogTail
    seq: int = 0  # the last assignment seq written (or seen) for it
    current: Attempt | None = None
    idle_since: float | None = None  # pool clock; None while it runs an attempt
    ready: bool = False  # it has logged something: provisioning and pull are over
    exiting: bool = False  # it logged that it ends itself


@dataclass(frozen=True)
class Rebuilt:
    """A worker's state as its files tell it (see :func:`rebuild`)."""

    seq: int
    current: tuple[AttemptRef, int, float | None] | None  # (attempt, run seq, its start) not ended
    stopping: bool
    exit_assigned: bool
    past: list[tuple[int, AttemptRef, float, float]] = field(default_factory=list)  # (seq, attempt, start, end)
    assigned_at: float | None = None


def read_assignment(volume: Volume, study: str, index: int) -> Assignment | None:
    """Worker ``index``'s assignment; None if missing or junk (junk is one warning naming the key)."""
    key = assignment_key(study, index)
    try:
        raw = volume.read_json(key)
    except VolumeNotFoundError:
        return None
    except HpoError as exc:
        log.warning("%s", " ".join(str(exc).split())[:300])
        return None
    try:
        assignment = Assignment.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        log.warning("%s: ignoring a malformed assignment (%s: %s)", key, ".".join(map(str, first["loc"])), first["msg"])
        return None
    if assignment.worker != index or (
        assignment.action != "exit" and (assignment.trial is None or assignment.attempt is None)
    ):
        log.warning("%s: ignoring an assignment that names worker %d or no attempt", key, assignment.worker)
        return None
    return assignment


def clamp(value: float, low: float, high: float) -> float:
    """``value`` within ``[low, high]`` (``low`` wins if they cross)."""
    return max(low, min(value, high))


def rebuild(assignment: Assignment | None, entries: Sequence[LogEntry], low: float, high: float) -> Rebuilt:
    """Which attempt a worker runs, per its assignment and its log; times clamped into ``[low, high]``.

    The assignment decides what the worker may be running (the log only says
    whether it started and ended it): ``run`` names the attempt; ``stop``
    names one whose run the log shows started and not ended; ``exit`` none.
    Earlier attempts with a start and a matching end are the worker's past.
    """
    starts: dict[int, StartEntry] = {}
    ends: dict[int, EndEntry] = {}
    seq = assignment.seq if assignment is not None else 0
    for entry in entries:
        if isinstance(entry, StartEntry):
            starts.setdefault(entry.seq, entry)
        elif isinstance(entry, EndEntry):
            ends.setdefault(entry.seq, entry)
        if isinstance(entry, StartEntry | EndEntry):
            seq = max(seq, entry.seq)

    def same(entry: StartEntry | EndEntry | None, ref: AttemptRef) -> bool:
        return entry is not None and (entry.trial, entry.attempt) == (ref.trial, ref.attempt)

    current: tuple[AttemptRef, int, float | None] | None = None
    stopping = False
    if assignment is not None and assignment.action != "exit":
        assert assignment.trial is not None and assignment.attempt is not None  # read_assignment checked
        ref = AttemptRef(assignment.trial, assignment.attempt)
        if assignment.action == "run":
            run_seq: int | None = assignment.seq
        else:  # stop: the latest run of that attempt the worker logged starting
            run_seq = max((s for s, e in starts.items() if s < assignment.seq and same(e, ref)), default=None)
            stopping = True
        if run_seq is not None and not same(ends.get(run_seq), ref):
            start = starts.get(run_seq)
            started_at = clamp(start.t, low, high) if same(start, ref) and start is not None else None
            if assignment.action == "run" or started_at is not None:
                current = (ref, run_seq, started_at)
    past = []
    floor = low
    for run_seq in sorted(ends):
        start, end = starts.get(run_seq), ends[run_seq]
        if start is None or (start.trial, start.attempt) != (end.trial, end.attempt):
            continue
        if current is not None and run_seq == current[1]:
            continue
        begin = clamp(start.t, floor, high)
        finish = clamp(end.t, begin, high)
        past.append((run_seq, AttemptRef(end.trial, end.attempt), begin, finish))
        floor = finish
    written = clamp(assignment.written_at, low, high) if assignment is not None else None
    return Rebuilt(
        seq=seq,
        current=current,
        stopping=stopping and current is not None,
        exit_assigned=assignment is not None and assignment.action == "exit",
        past=past,
        assigned_at=written,
    )
