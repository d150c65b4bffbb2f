"""The warm-worker protocol: what the controller and a long-lived worker say to each other on the volume.

A warm worker runs attempt after attempt. Every file still has one writer:

* ``hpo/<study>/workers/w<k>/assignment.json`` is written (whole, atomically)
  by the controller only. It says what worker ``k`` is to do now: run an
  attempt, stop the one it runs, or exit. ``seq`` grows with every write, so
  the worker acts on each assignment once, however often it reads it.
* ``hpo/<study>/workers/w<k>/log.jsonl`` is appended to by worker ``k`` only
  (a container restarted on the same pod appends after its dead predecessor):
  when it booted, when it started and ended each assignment, when it exits.
  The controller finds the grown logs with one listing per poll and reads
  only those, as it does the attempts' event files.

An attempt's own files (its ``events.jsonl``, its ``log.txt``) are unchanged:
the attempt's child process writes them, so the controller reads an attempt
the same way whichever worker runs it.

Worker indices are never reused within a study: a new worker takes the next
index after every one on the volume, so a log never mixes two workers' lives.
Everything read here came from a pod and is validated by these models; a line
that does not validate is skipped with a warning naming the key, never trusted.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from hpo.layout import StudyLayout

#: Seconds a worker waits between reads of its assignment (local processes override it through the env).
ASSIGNMENT_POLL_SECONDS = 0.5
#: The environment variable that makes ``python -m hpo.agent`` a warm worker, holding its index.
WORKER_ENV = "HPO_WORKER"
#: The environment variable that carries the worker's assignment poll interval (seconds).
WORKER_POLL_ENV = "HPO_WORKER_POLL"
#: The environment variable that carries the worker's idle limit (seconds; the study's ``workers.idle_limit``).
WORKER_IDLE_ENV = "HPO_WORKER_IDLE_LIMIT"
#: Set (to "1") in the environment of an attempt a warm worker runs: the agent runs that attempt only, leaving
#: its output where the worker sent it and the worker alive (the worker, not the attempt, ends the pod).
WORKER_ATTEMPT_ENV = "HPO_WORKER_ATTEMPT"
#: The largest worker index a key may name (no study launches more workers than this).
MAX_WORKER_INDEX = 10**6

_FiniteTime = Annotated[float, Field(allow_inf_nan=False, ge=0)]
_Index = Annotated[int, Field(ge=0, le=MAX_WORKER_INDEX)]
_Number = Annotated[int, Field(ge=0, le=2**31)]


class Assignment(BaseModel):
    """What the controller wants worker ``worker`` to do, as of write number ``seq``.

    ``action``:

    * ``run``: run attempt ``attempt`` of trial ``trial`` (its spec and
      control file are the trial's, as for any attempt);
    * ``stop``: stop attempt ``attempt`` of trial ``trial`` now, if it is the one
      running (SIGTERM to its process, SIGKILL after the grace); the attempt's
      own process then writes its final event (``pruned`` or ``stopped``: the
      trial's control file says which) and the worker waits for the next;
    * ``exit``: the study needs this worker no more: stop what runs, then end.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker: _Index
    seq: Annotated[int, Field(ge=1, le=2**53)]
    action: Literal["run", "stop", "exit"]
    trial: _Number | None = None
    attempt: _Number | None = None
    written_at: _FiniteTime = Field(default_factory=time.time)


class BootEntry(BaseModel):
    """The worker process started (again, after a container restart)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["boot"] = "boot"
    t: _FiniteTime = Field(default_factory=time.time)
    pid: Annotated[int, Field(ge=0, le=2**32)] = 0
    host: Annotated[str, Field(max_length=255)] = ""


class StartEntry(BaseModel):
    """The worker started the attempt of assignment ``seq`` (its process is forked)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["start"] = "start"
    t: _FiniteTime = Field(default_factory=time.time)
    seq: Annotated[int, Field(ge=1, le=2**53)]
    trial: _Number
    attempt: _Number


class EndEntry(BaseModel):
    """The attempt of assignment ``seq`` is over: its process exited with ``exit_code`` (after its final event)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["end"] = "end"
    t: _FiniteTime = Field(default_factory=time.time)
    seq: Annotated[int, Field(ge=1, le=2**53)]
    trial: _Number
    attempt: _Number
    exit_code: Annotated[int, Field(ge=-255, le=255)]


class ExitEntry(BaseModel):
    """The worker ends itself: ``reason`` is ``assigned`` (told to exit), ``idle`` (no controller and nothing to do)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["exit"] = "exit"
    t: _FiniteTime = Field(default_factory=time.time)
    reason: Annotated[str, Field(max_length=200)]


WorkerLogEntry = Annotated[BootEntry | StartEntry | EndEntry | ExitEntry, Field(discriminator="type")]
WORKER_LOG_ENTRY: TypeAdapter[BootEntry | StartEntry | EndEntry | ExitEntry] = TypeAdapter(WorkerLogEntry)

_WORKER_DIR = re.compile(r"^w(\d{1,7})$")


def workers_dir(study: str) -> str:
    """``hpo/<study>/workers``: every warm worker's folder."""
    return f"{StudyLayout(study).root}/workers"


def worker_dir(study: str, index: int) -> str:
    return f"{workers_dir(study)}/w{index}"


def assignment_key(study: str, index: int) -> str:
    """The controller's word to worker ``index`` (one writer: the controller)."""
    return f"{worker_dir(study, index)}/assignment.json"


def worker_record_key(study: str, index: int) -> str:
    """What worker ``index`` is and bills, as the controller launched it (one writer: the controller).

    Kept after the worker is gone, so a later controller can still split its
    bill across the attempts it ran (its log) and its overhead.
    """
    return f"{worker_dir(study, index)}/worker.json"


class WorkerRecord(BaseModel):
    """``worker.json``: the backend's id of worker ``index`` and its rate, from its launch."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    index: _Index
    id: Annotated[str, Field(min_length=1, max_length=200)]
    usd_per_hr: Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)] = 0.0
    gpu_count: Annotated[int, Field(ge=0, le=64)] = 0
    gpu_type: Annotated[str, Field(max_length=200)] | None = None
    created_at: _FiniteTime


def worker_log_key(study: str, index: int) -> str:
    """Worker ``index``'s own log (one writer: the worker)."""
    return f"{worker_dir(study, index)}/log.jsonl"


def worker_output_key(study: str, index: int) -> str:
    """Worker ``index``'s own output (its warnings, its fork server's), where nobody reads the container's."""
    return f"{worker_dir(study, index)}/output.txt"


def parse_worker_index(name: str) -> int | None:
    """``w<k>`` (a folder name, a pod name's tail) as ``k``, or None if it is not one."""
    match = _WORKER_DIR.match(name)
    if match is None:
        return None
    index = int(match.group(1))
    return index if index <= MAX_WORKER_INDEX else None


def encode_entry(entry: BootEntry | StartEntry | EndEntry | ExitEntry) -> bytes:
    """One log line (append-only JSON lines, like an attempt's event file)."""
    return entry.model_dump_json().encode() + b"\n"
