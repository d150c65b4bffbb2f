"""The ``local`` backend: each attempt is a subprocess running ``python -m hpo.agent``.

The processes are started in their own session, so they outlive a controller
that is killed, and the next controller finds them again by their environment
(``HPO_STUDY``, ``HPO_VOLUME``, ``HPO_TRIAL``, ``HPO_ATTEMPT``), exactly as the
RunPod backend finds pods by name. The pid and start time are also recorded
on the volume (``launch.json``) for people and tools to read. Where two live
processes run one attempt (a stray one started by a crashed controller's
retry, say), the oldest runs it and the others are :meth:`LocalBackend.extras`,
for the controller to terminate.

A local process costs nothing: its handles bill $0/h with no GPU, so the cost
meter records $0 and 0 GPU-seconds; what a local trial used is its
CPU-seconds, which the agent reports in its final event.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from hpo.backends._base import Backend
from hpo.errors import BackendError
from hpo.journal import default_cache_dir
from hpo.layout import StudyLayout
from hpo.volume import Volume
from hpo.workers import AttemptRef, Billing, WorkerHandle

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


class LocalBackend(Backend):
    """Attempts as local processes.

    Args:
        study: The study's name.
        volume: A directory volume (the processes open it by path).
        kill_grace: Seconds between SIGTERM and SIGKILL on terminate.
        python: The interpreter to run the agent with.
        log_dir: Where attempt logs go when the volume is not a local folder.
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._study = study
        self._volume = volume
        self._root = volume.address  # what the agent reopens the volume from
        # Where attempts' output goes when the volume is not a folder (S3): this machine's cache.
        self._log_dir = log_dir or default_cache_dir() / "logs" / hashlib.sha256(volume.url.encode()).hexdigest()[:16] / study
        self._layout = StudyLayout(study)
        self._kill_grace = kill_grace
        self._python = python
        self._clock = clock
        self._children: dict[int, tuple[subprocess.Popen[bytes], WorkerHandle]] = {}
        self._kill_at: dict[int, float] = {}  # pid -> when SIGKILL is due
        self._extras: list[WorkerHandle] = []  # live duplicates of an older process's attempt, by the last listing

    def launch(self, ref: AttemptRef) -> WorkerHandle:
        log_path = self._volume.local_path(self._layout.log(ref.trial, ref.attempt))
        if log_path is None:
            log_path = self._log_dir / f"{ref.trial}.{ref.attempt}.log.txt"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            try:
                proc = subprocess.Popen(
                    [self._python, "-m", "hpo.agent"],
                    env=worker_env(self._study, ref, self._root),
                    cwd=log_path.parent,  # not the project folder: the agent imports the code snapshot
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # survives the controller; killed as a group
                )
            except OSError as exc:
                raise BackendError(f"cannot start {self._python} for {ref}: {exc.strerror}") from exc
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            create_time = 0.0
        handle = _handle(ref, proc.pid, create_time)
        self._children[proc.pid] = (proc, handle)
        self._volume.write_json(
            self._layout.launch(ref.trial, ref.attempt),
            {"backend": self.name, "pid": proc.pid, "create_time": create_time, "host": socket.gethostname()},
        )
        return handle

    def list_live(self) -> dict[AttemptRef, WorkerHandle]:
        self._reap_children()
        found: dict[str, WorkerHandle] = {}
        for proc in psutil.process_iter(["pid", "create_time", "status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                env = proc.environ()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if env.get("HPO_STUDY") != self._study or env.get("HPO_VOLUME") != self._root:
                continue
            try:
                ref = AttemptRef(int(env["HPO_TRIAL"]), int(env["HPO_ATTEMPT"]))
            except (KeyError, ValueError):
                continue
            handle = _handle(ref, proc.info["pid"], proc.info["create_time"])
            found[handle.id] = handle
        # A child forked but not yet exec'd still shows our environment, not its own:
        # our own children count as live until they have exited.
        for _proc, handle in self._children.values():
            found.setdefault(handle.id, handle)
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
        for pid, (proc, _handle) in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]
                self._kill_at.pop(pid, None)

    def _kill_overdue(self) -> None:
        now = self._clock()
        for pid, due in list(self._kill_at.items()):
            if now < due:
                continue
            _signal_group(pid, signal.SIGKILL)
            del self._kill_at[pid]

    def close(self) -> None:
        self._reap_children()
