"""The local workers a study's backends started on this machine: one small file per worker, in the cache.

The ``local`` backend lists a study's workers by looking at these processes
only (a few reads of ``/proc`` each), never by scanning every process on the
host: that cost grew with whatever else ran on the machine, and it took the
processes an objective starts itself (which inherit the trial's environment)
for workers. The record lives in this machine's cache, next to the journal's,
so a controller started after a killed one adopts the workers it left; each
file is named by the worker's ``pid@start`` id and holds its attempt, or, for
a warm worker (which runs attempt after attempt), its index in the study
(``worker``): an older version, which knows only attempts, skips such a file.
A file whose process is gone is removed by the first backend that notices.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

from hpo.workers import AttemptRef


class Recorded(NamedTuple):
    """A worker as its start was recorded: its attempt, its pid and the process's start time.

    A warm worker has no attempt (``ref`` None) but its index in the study (``worker``).
    """

    ref: AttemptRef | None
    pid: int
    create_time: float
    worker: int | None = None


class WorkerRecord:
    """The folder of one study's worker files (created on the first start).

    Args:
        folder: Where the files go; several backends (controllers, ``hpo`` commands) may share it.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._known: dict[str, Recorded] = {}  # worker id -> what its file says, for every file read so far
        self._unreadable: set[str] = set()  # files that hold no attempt (torn, foreign): not read again

    def add(self, worker_id: str, worker: Recorded) -> None:
        """Record a worker just started (written whole, then renamed: a reader never sees half a file)."""
        self._folder.mkdir(parents=True, exist_ok=True)
        final = self._folder / f"{worker_id}.json"
        partial = self._folder / f".{worker_id}.{os.getpid()}.tmp"
        body: dict[str, int | float] = {"pid": worker.pid, "create_time": worker.create_time}
        if worker.ref is not None:
            body.update(trial=worker.ref.trial, attempt=worker.ref.attempt)
        if worker.worker is not None:
            body["worker"] = worker.worker
        partial.write_text(json.dumps(body))
        os.replace(partial, final)
        self._known[worker_id] = worker

    def workers(self) -> dict[str, Recorded]:
        """Every recorded worker, by id; only files not seen before are read."""
        try:
            names = [entry.name for entry in os.scandir(self._folder)]
        except FileNotFoundError:
            names = []
        present = {name[: -len(".json")] for name in names if name.endswith(".json") and not name.startswith(".")}
        for worker_id in present - self._known.keys() - self._unreadable:
            worker = self._read(worker_id)
            if worker is None:
                self._unreadable.add(worker_id)
            else:
                self._known[worker_id] = worker
        for gone in self._known.keys() - present:  # another backend removed it: its process ended
            del self._known[gone]
        return dict(self._known)

    def remove(self, worker_id: str) -> None:
        """Forget a worker whose process has ended."""
        self._known.pop(worker_id, None)
        (self._folder / f"{worker_id}.json").unlink(missing_ok=True)

    def _read(self, worker_id: str) -> Recorded | None:
        try:
            raw = json.loads((self._folder / f"{worker_id}.json").read_text())
            pid, create_time = int(raw["pid"]), float(raw["create_time"])
            if "worker" in raw:  # a warm worker: its index, no attempt
                index = raw["worker"]
                if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                    return None
                return Recorded(None, pid, create_time, index)
            return Recorded(AttemptRef(int(raw["trial"]), int(raw["attempt"])), pid, create_time)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
