"""``hpo job``'s side of a job: start it on the study's backend, follow its log to its end, end its worker.

The job's worker ends itself when its command exits (a pod terminates itself,
as a trial's does); :func:`end_job` terminates whatever the backend still
lists of it afterwards, so a worker that could not end itself bills no longer
than ``hpo job`` follows it. Following is a loop of cheap reads: the new bytes
of ``log.txt`` and ``status.json`` every ``poll_interval``, and one listing of
the backend's job workers every ``check_interval``, which tells a job whose
worker died without a word (a pod that never started, a process killed) from
one that is still on its way. Outages of the volume or of RunPod's API are
ridden out with a warning a minute; Ctrl-C leaves the job running (the CLI
says how to follow or cancel it).
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from hpo.code import publish_objectives
from hpo.errors import CloudError, ConfigError, LaunchUnknownError, VolumeError, VolumeNotFoundError
from hpo.jobs._records import (
    EXIT_LOST,
    LOST,
    JobFileError,
    JobRequest,
    JobSpec,
    JobStatus,
    JobWorker,
    is_job_id,
    new_job_id,
)
from hpo.layout import StudyLayout
from hpo.volume import Volume

log = logging.getLogger(__name__)

LOG_CHUNK = 1 << 20
"""Bytes of the job's log read per request: a long log is printed in pieces, never held whole."""

MISSED_CHECKS = 2
"""Listings in a row that must miss a job's worker (with no final status) before the job counts as lost:
one miss can be a worker that wrote its status and ended between the two reads."""

WARN_EVERY = 60.0

_T = TypeVar("_T")


class JobBackend(Protocol):
    """What a backend offers jobs (:class:`~hpo.backends.Backend` does, and raises where it cannot)."""

    name: str

    def launch_job(self, request: JobRequest) -> JobWorker: ...

    def list_jobs(self) -> list[JobWorker]: ...

    def terminate_job(self, worker: JobWorker) -> None: ...


def start_job(
    volume: Volume,
    backend: JobBackend,
    study: str,
    argv: Sequence[str],
    *,
    objectives: Path | None = None,
    request: JobRequest | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[JobSpec, JobWorker]:
    """Write job ``argv``'s spec on the volume, then have the backend start its worker.

    ``objectives``: the folder whose snapshot the command may import (it is
    uploaded as the trials' is, and named in the spec); ``request``: GPU
    wishes (its ``job_id`` is replaced by the new job's). The spec is on the
    volume before the worker exists, so a worker never looks for it in vain.

    Raises:
        ConfigError: No command was given, or the request asks for what the backend lacks.
        BackendError: The backend could not start a worker (no capacity, ...); the spec is
            removed again, except after :class:`LaunchUnknownError` (the worker may exist).
    """
    if not argv:
        raise ConfigError("hpo job: no command to run: put it after `--`, e.g. hpo job --study NAME -- python -V")
    job_id = new_job_id(clock())
    code = publish_objectives(volume, study, objectives) if objectives is not None and objectives.is_dir() else None
    spec = JobSpec(job_id, study, tuple(argv), code, clock())
    spec.write(volume)
    wishes = request or JobRequest(job_id)
    try:
        worker = backend.launch_job(JobRequest(job_id, wishes.gpu_types, wishes.gpu_count))
    except LaunchUnknownError:
        raise  # its pod may exist and run the spec: keep it
    except BaseException:
        volume.delete(StudyLayout(study).job_spec(job_id))  # no worker will run it: no job to list
        raise
    volume.write_json(
        StudyLayout(study).job_launch(job_id),
        {"backend": backend.name, "worker": worker.id, "launched_at": clock(), "detail": worker.detail},
    )
    return spec, worker


def workers_of(backend: JobBackend, job_id: str) -> list[JobWorker]:
    """The workers the backend lists for ``job_id`` (live or not)."""
    return [worker for worker in backend.list_jobs() if worker.job_id == job_id]


@dataclass
class JobFollower:
    """Passes job ``job_id``'s log to ``write`` as it grows, until the job ends.

    Args:
        volume: The study's volume as this machine reaches it.
        backend: The study's backend (asked which workers run the job).
        study: The study's name.
        job_id: The job.
        write: Takes each new piece of the log (bytes, cut anywhere: a UTF-8 character may straddle two).
        poll_interval: Seconds between reads of the log and the status.
        check_interval: Seconds between listings of the backend's job workers.
        clock: Monotonic seconds, injectable.
        sleep: Injectable.
    """

    volume: Volume
    backend: JobBackend
    study: str
    job_id: str
    write: Callable[[bytes], None]
    poll_interval: float = 1.0
    check_interval: float = 10.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    offset: int = 0

    def __post_init__(self) -> None:
        self._layout = StudyLayout(self.study)
        self._warned_at: float | None = None

    def follow(self) -> JobStatus:
        """Print the log until the job's status says it ended (or its worker is gone without one); return it."""
        next_check = self.clock() + self.check_interval
        missed = 0
        while True:
            status = self._read(self._status)
            self._read(self._print_new)
            if status is not None and status.ended:
                self._read(self._print_new)  # what the runner wrote between the two reads
                return status
            if self.clock() >= next_check:
                next_check = self.clock() + self.check_interval
                gone = self._read(self._worker_gone)
                missed = missed + 1 if gone else 0
                if gone and missed >= MISSED_CHECKS:
                    status = self._read(self._status)
                    self._read(self._print_new)
                    if status is not None and status.ended:
                        return status
                    return JobStatus(LOST, EXIT_LOST, detail=f"{gone}, and the job wrote no exit status")
            self.sleep(self.poll_interval)

    def _status(self) -> JobStatus | None:
        return JobStatus.read(self.volume, self.study, self.job_id)

    def _print_new(self) -> None:
        key = self._layout.job_log(self.job_id)
        while True:
            try:
                chunk = self.volume.read_range(key, self.offset, LOG_CHUNK)
            except VolumeNotFoundError:
                return  # the runner has not written a line yet
            if not chunk:
                return
            self.write(chunk)
            self.offset += len(chunk)
            if len(chunk) < LOG_CHUNK:
                return

    def _worker_gone(self) -> str | None:
        """Why no worker runs the job any more ("pod abc is exited"), or None while one may."""
        workers = workers_of(self.backend, self.job_id)
        if any(worker.live for worker in workers):
            return None
        if workers:
            return "; ".join(f"its worker {w.id} is {w.status}" for w in workers)
        return f"no worker of the {self.backend.name} backend runs it"

    def _read(self, read: Callable[[], _T]) -> _T | None:
        """``read()``, with an outage of the volume or of the provider's API ridden out (None; a warning a minute).

        A malformed job file is no outage: it is raised.
        """
        try:
            return read()
        except JobFileError:
            raise
        except (VolumeError, CloudError) as exc:
            now = self.clock()
            if self._warned_at is None or now - self._warned_at >= WARN_EVERY:
                self._warned_at = now
                log.warning("job %s: %s (retrying)", self.job_id, exc)
            return None


def end_job(backend: JobBackend, job_id: str) -> list[JobWorker]:
    """Terminate every worker the backend still lists for ``job_id`` (each ends itself too); return them."""
    workers = workers_of(backend, job_id)
    for worker in workers:
        backend.terminate_job(worker)
    return workers


def cancel_job(
    backend: JobBackend,
    job_id: str,
    *,
    timeout: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[JobWorker]:
    """Terminate job ``job_id``'s workers and wait (at most ``timeout`` s) until none is live; return those terminated.

    Raises:
        CloudError: The provider kept failing the calls; the worker may live on.
    """
    ended = end_job(backend, job_id)
    deadline = clock() + timeout
    while ended and clock() < deadline:
        live = [worker for worker in workers_of(backend, job_id) if worker.live]
        if not live:
            break
        for worker in live:
            backend.terminate_job(worker)  # idempotent: lets a backend escalate (SIGKILL after its grace)
        sleep(0.5)
    return ended


@dataclass(frozen=True)
class JobRow:
    """One job as ``hpo job --list`` shows it."""

    id: str
    command: str
    state: str
    exit_code: int | None
    workers: tuple[JobWorker, ...]


def job_rows(volume: Volume, backend: JobBackend, study: str) -> list[JobRow]:
    """Every job of the study the volume or the backend knows, oldest first.

    A job whose files cannot be read shows as ``unreadable``; a worker whose
    job has no spec (one being started) shows with an empty command.
    """
    layout = StudyLayout(study)
    ids = {
        parts[0]
        for info in volume.list(layout.jobs_dir)
        if len(parts := info.key.removeprefix(layout.jobs_dir + "/").split("/")) == 2 and is_job_id(parts[0])
    }
    workers: dict[str, list[JobWorker]] = {}
    for worker in backend.list_jobs():
        workers.setdefault(worker.job_id, []).append(worker)
    rows = []
    for job_id in sorted(ids | set(workers)):
        listed = tuple(workers.get(job_id, ()))
        try:
            spec = JobSpec.read(volume, study, job_id)
            command = shlex.join(spec.argv)
        except VolumeNotFoundError:
            command = ""
        except VolumeError:
            command = "(unreadable job.json)"
        try:
            status = JobStatus.read(volume, study, job_id)
        except VolumeError:
            rows.append(JobRow(job_id, command, "unreadable", None, listed))
            continue
        if status is not None:
            state = status.state
        elif any(worker.live for worker in listed):
            state = "starting"
        else:
            state = "ended without a status"
        rows.append(JobRow(job_id, command, state, status.exit_code if status else None, listed))
    return rows
