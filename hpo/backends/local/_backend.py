"""The ``local`` backend: each attempt is a subprocess running ``python -m hpo.agent``.

The processes are started in their own session, so they outlive a controller
that is killed. Each start is recorded in this machine's cache
(:mod:`._registry`: pid, start time, attempt), and a listing looks at those
processes only, a few reads of ``/proc`` each: never at every process on the
host, whose number has nothing to do with the study, and never at the
processes an objective starts itself (joblib, DataLoader workers), which
inherit the trial's environment but are no workers. The next controller
adopts the recorded workers; its first listing also looks once for the
study's session leaders by their environment (``HPO_STUDY``, ``HPO_VOLUME``,
``HPO_TRIAL``, ``HPO_ATTEMPT``), for workers started without a record (an
older version, another cache folder). The pid and start time are also
recorded on the volume (``launch.json``) for people and tools to read. Where
two live processes run one attempt (a stray one started by a crashed
controller's retry, say), the oldest runs it and the others are
:meth:`LocalBackend.extras`, for the controller to terminate.

A local process costs nothing: its handles bill $0/h with no GPU, so the cost
meter records $0 and 0 GPU-seconds; what a local trial used is its
CPU-seconds, which the agent reports in its final event.

A one-off job (``hpo job``) is a process of the same agent with
:func:`hpo.jobs.job_env` instead of a trial's variables, so
:meth:`LocalBackend.list_live` never counts it; :meth:`LocalBackend.list_jobs`
finds it by that environment (session leaders only: a job's own children
are not jobs). It has no GPU to choose.

A warm worker (:meth:`LocalBackend.launch_worker`, for :mod:`hpo.pool`) is
a process of the same agent with the study's address and ``HPO_WORKER=<k>``
instead of an attempt's variables, in its own session (killed as a group),
its output in ``hpo/<study>/workers/w<k>/output.txt`` on a folder volume (else
this machine's log folder). Its start is recorded as an attempt worker's is,
with its index in place of an attempt, so the next controller finds it; the
first listing also finds the study's session leaders by ``HPO_WORKER``.
:meth:`LocalBackend.list_live` never lists one, nor
:meth:`LocalBackend.list_workers` an attempt's process; it bills $0/h.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil

from hpo.backends._base import WORKER_INDEX_ENV, Backend, warm_worker_env
from hpo.backends.local._registry import Recorded, WorkerRecord
from hpo.errors import BackendError, ConfigError
from hpo.jobs import JOB_ENV, JOB_STUDY_ENV, VOLUME_ENV, JobRequest, JobWorker, is_job_id, job_env
from hpo.journal import default_cache_dir
from hpo.layout import StudyLayout
from hpo.volume import Volume
from hpo.workers import AttemptRef, Billing, PoolWorker, WorkerHandle

# Variables a Python process needs to start and find its packages; nothing else
# of the controller's environment (API keys, S3 secrets) reaches a trial.
# S3 credentials reach a local trial only through boto3's files (the variables
# below name files and profiles, never hold a key).
_PASSED_THROUGH = (
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "HPO_CACHE_DIR",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_PROFILE",
)


def worker_env(study: str, ref: AttemptRef, volume_root: str) -> dict[str, str]:
    """The whole environment of a local trial process."""
    env = {key: os.environ[key] for key in _PASSED_THROUGH if key in os.environ}
    env.update(
        HPO_STUDY=study,
        HPO_TRIAL=str(ref.trial),
        HPO_ATTEMPT=str(ref.attempt),
        HPO_VOLUME=volume_root,
        # Trials share the machine's cores: one BLAS thread each, or they fight.
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def pool_worker_env(study: str, index: int, volume_root: str, env: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of local warm worker ``index``: a trial process's without the attempt, plus ``env``."""
    return warm_worker_env(worker_env(study, AttemptRef(0, 0), volume_root), index, env)


def worker_output_key(study: str, index: int) -> str:
    """Where warm worker ``index``'s own output goes on a folder volume: ``hpo/<study>/workers/w<index>/output.txt``."""
    return f"{StudyLayout(study).root}/workers/w{index}/output.txt"


def worker_launch_key(study: str, index: int) -> str:
    """Warm worker ``index``'s launch record on the volume (written by the controller's backend)."""
    return f"{StudyLayout(study).root}/workers/w{index}/launch.json"


def job_worker_env(study: str, job_id: str, volume_root: str) -> dict[str, str]:
    """The whole environment of a local job's process: what a Python process needs, and the job's address."""
    env = {key: os.environ[key] for key in _PASSED_THROUGH if key in os.environ}
    env.update(job_env(study, job_id, volume_root), PYTHONUNBUFFERED="1")
    return env


def _signal_group(pid: int, sig: signal.Signals) -> bool:
    """Signal the worker's process group (the agent and anything it forked); False if it is gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # not a group leader we may signal: the process alone, then
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
    return True


def _handle_id(pid: int, create_time: float) -> str:
    # pid plus start time: a recycled pid never matches an old handle.
    return f"{pid}@{create_time:.3f}"


def _age(handle: WorkerHandle) -> tuple[float, int]:
    """Sort key: the oldest process first (by start time, then pid)."""
    pid, _, create_time = handle.id.partition("@")
    return (float(create_time), int(pid))


def _handle(ref: AttemptRef, pid: int, create_time: float) -> WorkerHandle:
    # Free: $0/h and no GPU; the start time still dates the attempt.
    billing = Billing(usd_per_hr=0.0, gpu_count=0, started_at=create_time or None)
    return WorkerHandle(ref, _handle_id(pid, create_time), "running", {"pid": pid}, billing)


def _pool_worker(index: int, pid: int, create_time: float) -> PoolWorker:
    billing = Billing(usd_per_hr=0.0, gpu_count=0, started_at=create_time or None)
    return PoolWorker(index, _handle_id(pid, create_time), "running", {"pid": pid, "create_time": create_time}, billing)


def _job_worker(job_id: str, pid: int, create_time: float) -> JobWorker:
    return JobWorker(job_id, _handle_id(pid, create_time), "running", True, {"pid": pid})


def _id_age(worker_id: str) -> tuple[float, int]:
    """Sort key of a ``pid@start`` id: the oldest process first."""
    pid, _, create_time = worker_id.partition("@")
    return (float(create_time), int(pid))


def _leads_session(pid: int) -> bool:
    """Whether ``pid`` leads its own session, as every worker and job this backend starts does.

    A process an objective starts (joblib, a DataLoader's workers) stays in
    the worker's session and inherits its environment: this tells it apart.
    """
    try:
        return os.getsid(pid) == pid
    except OSError:  # gone, or not ours to ask about
        return False


def _runs(pid: int, worker_id: str) -> bool:
    """Whether ``pid`` is still the live (non-zombie) process ``worker_id`` names (a recycled pid is not)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and _handle_id(pid, proc.create_time()) == worker_id
    except psutil.NoSuchProcess:
        return False


def _index_of(text: str) -> int | None:
    """``HPO_WORKER``'s value as a worker index, or None for anything else."""
    if not text.isdigit() or len(text) > 7:
        return None
    return int(text)


def _has_warm_ancestor(pid: int, index: int | None, warm: Mapping[int, tuple[int, float]]) -> bool:
    """Whether a warm worker of ``index`` (any index: None), among ``warm`` by pid, is an ancestor of process ``pid``."""
    if not warm:
        return False
    try:
        parents = psutil.Process(pid).parents()
    except psutil.NoSuchProcess:
        return True  # gone: nothing to record
    return any(parent.pid in warm and index in (None, warm[parent.pid][0]) for parent in parents)


class LocalBackend(Backend):
    """Attempts as local processes.

    Args:
        study: The study's name.
        volume: A directory volume (the processes open it by path).
        kill_grace: Seconds between SIGTERM and SIGKILL on terminate.
        python: The interpreter to run the agent with.
        log_dir: Where attempt logs go when the volume is not a local folder.
        record_dir: Where the workers' starts are recorded (default: this machine's cache).
        clock: Monotonic clock, injectable.
    """

    name = "local"

    def __init__(
        self,
        study: str,
        volume: Volume,
        *,
        kill_grace: float = 5.0,
        python: str = sys.executable,
        log_dir: Path | None = None,
        record_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._study = study
        self._volume = volume
        self._root = volume.address  # what the agent reopens the volume from
        # Where attempts' output goes when the volume is not a folder (S3): this machine's cache.
        volume_key = hashlib.sha256(volume.url.encode()).hexdigest()[:16]
        self._log_dir = log_dir or default_cache_dir() / "logs" / volume_key / study
        self._record = WorkerRecord(record_dir or default_cache_dir() / "workers" / volume_key / study)
        self._looked_around = False  # the one listing by environment, for workers started without a record
        self._layout = StudyLayout(study)
        self._kill_grace = kill_grace
        self._python = python
        self._clock = clock
        self._children: dict[int, tuple[subprocess.Popen[bytes], WorkerHandle]] = {}
        self._kill_at: dict[int, float] = {}  # pid -> when SIGKILL is due
        self._extras: list[WorkerHandle] = []  # live duplicates of an older process's attempt, by the last listing
        self._job_children: dict[int, tuple[subprocess.Popen[bytes], JobWorker]] = {}
        self._worker_children: dict[int, tuple[subprocess.Popen[bytes], PoolWorker]] = {}
        self._worker_extras: list[PoolWorker] = []  # live duplicates of an older worker's index, by the last listing

    def launch(self, ref: AttemptRef) -> WorkerHandle:
        log_path = self._volume.local_path(self._layout.log(ref.trial, ref.attempt))
        if log_path is None:
            log_path = self._log_dir / f"{ref.trial}.{ref.attempt}.log.txt"
        proc, create_time = self._start_agent(worker_env(self._study, ref, self._root), log_path, str(ref))
        handle = _handle(ref, proc.pid, create_time)
        self._children[proc.pid] = (proc, handle)
        if create_time:  # else it is gone already: nothing to adopt
            self._record.add(handle.id, Recorded(ref, proc.pid, create_time))
        self._volume.write_json(
            self._layout.launch(ref.trial, ref.attempt),
            {"backend": self.name, "pid": proc.pid, "create_time": create_time, "host": socket.gethostname()},
        )
        return handle

    def _start_agent(self, env: dict[str, str], log_path: Path, what: str) -> tuple[subprocess.Popen[bytes], float]:
        """``python -m hpo.agent`` in a session of its own, its output appended to ``log_path``; it and its start time.

        The start time (0.0 if it is gone already) tells the process apart from
        a later one that reuses its pid.
        """
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            try:
                proc = subprocess.Popen(
                    [self._python, "-m", "hpo.agent"],
                    env=env,
                    cwd=log_path.parent,  # not the project folder: the agent imports the code snapshot
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # survives the controller; killed as a group
                )
            except OSError as exc:
                raise BackendError(f"cannot start {self._python} for {what}: {exc.strerror}") from exc
        try:
            return proc, psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            return proc, 0.0

    def list_live(self) -> dict[AttemptRef, WorkerHandle]:
        self._reap_children()
        self._look_around_once()
        # Our own children live until reaped (a cheap waitpid above); the others are checked one by one.
        found: dict[str, WorkerHandle] = {handle.id: handle for _proc, handle in self._children.values()}
        for worker_id, worker in self._record.workers().items():
            if worker_id in found or worker.ref is None:  # a warm worker's record: list_workers' to read
                continue
            if _runs(worker.pid, worker_id):
                found[worker_id] = _handle(worker.ref, worker.pid, worker.create_time)
            else:
                self._record.remove(worker_id)
        by_ref: dict[AttemptRef, list[WorkerHandle]] = {}
        for handle in found.values():
            by_ref.setdefault(handle.ref, []).append(handle)
        live: dict[AttemptRef, WorkerHandle] = {}
        extras: list[WorkerHandle] = []
        for ref, same in by_ref.items():
            # Two processes for one attempt: the oldest runs it, the younger ones are strays.
            live[ref], *others = sorted(same, key=_age)
            extras.extend(others)
        self._extras = extras
        self._kill_overdue()
        return live

    def _look_around_once(self) -> None:
        if not self._looked_around:
            self._adopt_by_environment()
            self._looked_around = True

    def _adopt_by_environment(self) -> None:
        """Record the study's workers that only their environment names (started without a record).

        Done once per backend, at its first listing (of attempts or of warm
        workers): it reads every process on the host. Only session leaders
        count: a process an objective started carries the same environment but
        stays in its worker's session. A process with ``HPO_WORKER`` is a warm
        worker, never an attempt's, and not one when a warm worker of the same
        index is among its ancestors; an attempt process whose ancestor is a
        warm worker is that worker's (if it ever ran in a session of its own), not ours.
        """
        known = self._record.workers()
        warm: dict[int, tuple[int, float]] = {}  # pid -> (index, start) of the warm workers found by environment
        attempts: dict[str, Recorded] = {}
        for proc in psutil.process_iter(["pid", "create_time", "status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE or not _leads_session(proc.info["pid"]):
                    continue
                env = proc.environ()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if env.get("HPO_STUDY") != self._study or env.get("HPO_VOLUME") != self._root:
                continue
            worker_id = _handle_id(proc.info["pid"], proc.info["create_time"])
            if WORKER_INDEX_ENV in env:
                index = _index_of(env[WORKER_INDEX_ENV])
                if index is not None:
                    warm[proc.info["pid"]] = (index, proc.info["create_time"])
                continue
            try:
                ref = AttemptRef(int(env["HPO_TRIAL"]), int(env["HPO_ATTEMPT"]))
            except (KeyError, ValueError):
                continue
            if worker_id not in known:
                attempts[worker_id] = Recorded(ref, proc.info["pid"], proc.info["create_time"])
        for worker_id, recorded in attempts.items():
            if not _has_warm_ancestor(recorded.pid, None, warm):  # else a warm worker's attempt, not ours to list
                self._record.add(worker_id, recorded)
        for pid, (index, create_time) in warm.items():
            worker_id = _handle_id(pid, create_time)
            if worker_id in known or _has_warm_ancestor(pid, index, warm):
                continue
            self._record.add(worker_id, Recorded(None, pid, create_time, index))

    def extras(self) -> list[WorkerHandle]:
        """Live processes of the last listing whose attempt an older process runs (strays to terminate)."""
        return list(self._extras)

    def terminate(self, handle: WorkerHandle) -> None:
        pid = int(handle.detail.get("pid") or handle.id.split("@")[0])
        if pid in self._kill_at or not self._is_same_process(handle, pid):
            return  # already signalled (a second SIGTERM would cut its last words short), or gone
        if _signal_group(pid, signal.SIGTERM):
            self._kill_at.setdefault(pid, self._clock() + self._kill_grace)

    def _is_same_process(self, handle: WorkerHandle, pid: int) -> bool:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                self._reap_children()
                return False
            return _handle_id(pid, proc.create_time()) == handle.id
        except psutil.NoSuchProcess:
            return False

    def _reap_children(self) -> None:
        for pid, (proc, handle) in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]
                self._kill_at.pop(pid, None)
                self._record.remove(handle.id)
        for pid, (proc, worker) in list(self._worker_children.items()):
            if proc.poll() is not None:
                del self._worker_children[pid]
                self._kill_at.pop(pid, None)
                self._record.remove(worker.id)

    def _kill_overdue(self) -> None:
        now = self._clock()
        for pid, due in list(self._kill_at.items()):
            if now < due:
                continue
            _signal_group(pid, signal.SIGKILL)
            del self._kill_at[pid]

    # -- warm workers ---------------------------------------------------------------------

    @property
    def supports_workers(self) -> bool:
        return True

    def launch_worker(self, index: int, env: Mapping[str, str]) -> PoolWorker:
        """A process ``python -m hpo.agent`` as warm worker ``index``, in its own session; returns at once."""
        full_env = pool_worker_env(self._study, index, self._root, env)
        log_path = self._volume.local_path(worker_output_key(self._study, index))
        if log_path is None:
            log_path = self._log_dir / "workers" / f"w{index}.output.txt"
        proc, create_time = self._start_agent(full_env, log_path, f"worker {index}")
        worker = _pool_worker(index, proc.pid, create_time)
        self._worker_children[proc.pid] = (proc, worker)
        if create_time:  # else it is gone already: nothing to adopt
            self._record.add(worker.id, Recorded(None, proc.pid, create_time, index))
        self._volume.write_json(
            worker_launch_key(self._study, index),
            {"backend": self.name, "pid": proc.pid, "create_time": create_time, "host": socket.gethostname()},
        )
        return worker

    def list_workers(self) -> dict[int, PoolWorker]:
        """The study's live warm workers on this machine by index: those recorded (ours, a previous controller's)."""
        self._reap_children()
        self._look_around_once()
        found: dict[str, PoolWorker] = {worker.id: worker for _proc, worker in self._worker_children.values()}
        for worker_id, recorded in self._record.workers().items():
            if worker_id in found or recorded.worker is None:  # an attempt's record: list_live's to read
                continue
            if _runs(recorded.pid, worker_id):
                found[worker_id] = _pool_worker(recorded.worker, recorded.pid, recorded.create_time)
            else:
                self._record.remove(worker_id)
        by_index: dict[int, list[PoolWorker]] = {}
        for worker in found.values():
            by_index.setdefault(worker.index, []).append(worker)
        live: dict[int, PoolWorker] = {}
        extras: list[PoolWorker] = []
        for index, same in by_index.items():
            live[index], *others = sorted(same, key=lambda worker: _id_age(worker.id))
            extras.extend(others)
        self._worker_extras = extras
        self._kill_overdue()
        return live

    def worker_extras(self) -> list[PoolWorker]:
        """Live warm workers of the last :meth:`list_workers` whose index an older process holds."""
        return list(self._worker_extras)

    def terminate_worker(self, worker: PoolWorker) -> None:
        """SIGTERM to the worker's process group, SIGKILL after ``kill_grace`` (at a later listing); silent if gone."""
        pid = int(worker.detail.get("pid") or worker.id.split("@")[0])
        if pid in self._kill_at or not _runs(pid, worker.id):
            return  # already signalled (SIGKILL follows after the grace), or gone
        if _signal_group(pid, signal.SIGTERM):
            self._kill_at.setdefault(pid, self._clock() + self._kill_grace)

    # -- one-off jobs ---------------------------------------------------------------------

    def launch_job(self, request: JobRequest) -> JobWorker:
        """A process running job ``request.job_id``; its own output (not the command's) goes to this machine's log folder."""
        if request.gpu_types or request.gpu_count:
            raise ConfigError(f"study {self._study!r} runs on the local backend, which has no GPU types to choose (--gpu)")
        runner_log = self._log_dir / "jobs" / f"{request.job_id}.txt"
        runner_log.parent.mkdir(parents=True, exist_ok=True)
        with open(runner_log, "ab") as out:
            try:
                proc = subprocess.Popen(
                    [self._python, "-m", "hpo.agent"],
                    env=job_worker_env(self._study, request.job_id, self._root),
                    cwd=runner_log.parent,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # survives `hpo job` (Ctrl-C detaches); killed as a group
                )
            except OSError as exc:
                raise BackendError(f"cannot start {self._python} for job {request.job_id}: {exc.strerror}") from exc
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            create_time = 0.0
        worker = _job_worker(request.job_id, proc.pid, create_time)
        self._job_children[proc.pid] = (proc, worker)
        return worker

    def list_jobs(self) -> list[JobWorker]:
        """The study's job processes on this machine (found by their environment), oldest first."""
        for pid, (child, _worker) in list(self._job_children.items()):
            if child.poll() is not None:
                del self._job_children[pid]
                self._kill_at.pop(pid, None)
        found: dict[str, JobWorker] = {}
        for proc in psutil.process_iter(["pid", "create_time", "status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE or not _leads_session(proc.info["pid"]):
                    continue  # a job's own children carry its environment too
                env = proc.environ()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if env.get(JOB_STUDY_ENV) != self._study or env.get(VOLUME_ENV) != self._root:
                continue
            if is_job_id(env.get(JOB_ENV)):
                worker = _job_worker(env[JOB_ENV], proc.info["pid"], proc.info["create_time"])
                found[worker.id] = worker
        for _child, worker in self._job_children.values():  # forked but not yet exec'd: not yet its own environment
            found.setdefault(worker.id, worker)
        self._kill_overdue()
        return sorted(found.values(), key=lambda worker: _id_age(worker.id))

    def terminate_job(self, worker: JobWorker) -> None:
        pid = int(worker.detail.get("pid") or worker.id.split("@")[0])
        if pid in self._kill_at or not _runs(pid, worker.id):
            return  # already signalled (SIGKILL follows after the grace), or gone
        if _signal_group(pid, signal.SIGTERM):
            self._kill_at.setdefault(pid, self._clock() + self._kill_grace)

    def close(self) -> None:
        """Reap what ended, and wait for the warm workers this backend told to stop (SIGKILL after the grace).

        A run that retired its workers then leaves no process of the study
        behind when it returns. Workers still running an attempt are not
        waited for: the next controller adopts them.
        """
        deadline = time.monotonic() + self._kill_grace  # real seconds: this wait blocks the caller
        for pid, (proc, _worker) in list(self._worker_children.items()):
            if pid not in self._kill_at:
                continue
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(pid, signal.SIGKILL)
                proc.wait()
            self._kill_at.pop(pid, None)
        self._reap_children()
