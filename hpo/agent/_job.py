"""A one-off job inside its worker: ``python -m hpo.agent`` with ``HPO_JOB`` set (``hpo job``; see :mod:`hpo.jobs`).

The runner reads the job's spec from the volume, runs its command once (no
shell; in the volume's folder, ``/workspace`` on a pod; the study's objectives
snapshot first on ``PYTHONPATH``), copies the command's output to the job's
``log.txt`` on the volume (and to its own output, a pod's container log) about
once a second, and writes ``status.json``: ``running`` when the command starts,
then how it ended. Then it ends its worker the way the backend says
(:func:`hpo.backends.worker_hook`: a pod terminates itself), since RunPod
restarts a container that exits and would run the command again.

A job runs at most once: a runner that finds the job already ended (its
worker could not end itself, and the container restarted) ends the worker
again without running anything; one that finds it ``running`` (the container
restarted under the command) marks it ``lost`` instead of running it twice,
since nothing says how far the command got.

The command gets the worker's environment without the pod-scoped
``RUNPOD_API_KEY`` (only the runner needs it, to end the pod) and without the
job's own variables (so no listing takes the command for the job's runner).
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from hpo.backends import worker_hook
from hpo.code import unpack_objectives
from hpo.errors import HpoError, ObjectiveError, VolumeError
from hpo.jobs import (
    EXIT_LOST,
    EXITED,
    JOB_ENV,
    JOB_STUDY_ENV,
    LOST,
    NOT_STARTED,
    RUNNING,
    TERMINATED,
    VOLUME_ENV,
    JobSpec,
    JobStatus,
)
from hpo.journal import default_cache_dir
from hpo.layout import StudyLayout
from hpo.volume import DirectoryVolume, Volume, open_volume

log = logging.getLogger("hpo.job")

FLUSH_SECONDS = 1.0
"""At most this long between a line the command prints and its copy in ``log.txt`` on the volume."""
FLUSH_BYTES = 64 * 1024

EXIT_NOT_FOUND = 127  # as a shell says it: the command does not exist
EXIT_NOT_RUNNABLE = 126  # it exists but cannot be run
EXIT_RUNNER = 1  # the runner itself failed (volume, spec, snapshot): the command never ran

#: Variables the command does not get: the pod-scoped key (the runner's, to end its pod) and the job's address.
WITHHELD_ENV = ("RUNPOD_API_KEY", JOB_ENV, JOB_STUDY_ENV)


@dataclass(frozen=True)
class JobAddress:
    """Which job this worker runs, from its environment."""

    job_id: str
    study: str
    volume_root: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobAddress:
        missing = [name for name in (JOB_ENV, JOB_STUDY_ENV, VOLUME_ENV) if not env.get(name)]
        if missing:
            raise ObjectiveError(f"hpo.agent: a job's worker lacks the environment variable(s) {', '.join(missing)}")
        return cls(env[JOB_ENV], env[JOB_STUDY_ENV], env[VOLUME_ENV])


def run_job_worker(env: Mapping[str, str]) -> int:
    """Run the job named by ``env`` (at most once), then end the worker unless it is being stopped; the exit code."""
    logging.basicConfig(level=logging.INFO, format="hpo.job: %(message)s", stream=sys.stderr)
    stopping = False
    try:
        address = JobAddress.from_env(env)
        status = run_job(address, open_volume(address.volume_root), env)
        code = status.exit_code if status.exit_code is not None else EXIT_RUNNER
        stopping = status.state == TERMINATED
    except HpoError as exc:
        print(f"hpo.job: {exc}", file=sys.stderr)
        code = EXIT_RUNNER
    except Exception:  # noqa: BLE001 - a bug of ours: say it, and still end the worker below
        traceback.print_exc()
        code = EXIT_RUNNER
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not stopping:  # a worker being stopped (SIGTERM) is ended by whoever stops it
        hook = worker_hook(env)
        if hook is not None:
            hook.end(env)
    return code


def run_job(
    address: JobAddress,
    volume: Volume,
    env: Mapping[str, str],
    *,
    cache_dir: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> JobStatus:
    """Run the job's command once and record how it ended; return that status (also when it ran before).

    Raises:
        HpoError: The volume, the spec or the code snapshot failed before the
            command could start (a ``not-started`` status is written if the
            volume takes it).
    """
    study, job_id = address.study, address.job_id
    earlier = JobStatus.read(volume, study, job_id)
    if earlier is not None and earlier.ended:
        log.warning("job %s ended before (%s, exit code %s): not running it again", job_id, earlier.state, earlier.exit_code)
        return earlier
    if earlier is not None:  # "running": the container restarted under the command
        lost = JobStatus(
            LOST, EXIT_LOST, earlier.started_at, clock(),
            "the worker restarted while the command ran; not running it again",
        )  # fmt: skip
        lost.write(volume, study, job_id)
        return lost
    sink = _LogSink(volume, StudyLayout(study).job_log(job_id))
    try:
        spec = JobSpec.read(volume, study, job_id)
        python_path = [str(unpack_objectives(volume, study, spec.code, cache_dir or default_cache_dir()))] if spec.code else []
    except HpoError as exc:
        failed = JobStatus(NOT_STARTED, EXIT_RUNNER, clock(), clock(), str(exc))
        sink.line(f"hpo job {job_id}: cannot start: {exc}")
        _write_quietly(failed, volume, study, job_id)
        return failed
    cwd = volume.root if isinstance(volume, DirectoryVolume) else Path.cwd()
    started = clock()
    JobStatus(RUNNING, None, started).write(volume, study, job_id)
    sink.line(f"hpo job {job_id}: running {shlex.join(spec.argv)} in {cwd}")
    try:
        proc = subprocess.Popen(
            list(spec.argv),
            cwd=cwd,
            env=command_env(env, python_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_NOT_RUNNABLE
        why = f"cannot run {spec.argv[0]!r}: {exc.strerror or exc}"
        sink.line(f"hpo job {job_id}: {why}")
        status = JobStatus(NOT_STARTED, code, started, clock(), why)
        _write_quietly(status, volume, study, job_id)
        return status
    stop = _forward_sigterm(proc)
    try:
        _pump(proc, sink)
        returncode = proc.wait()
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = returncode if returncode >= 0 else 128 - returncode
    state = TERMINATED if stop.requested else EXITED
    sink.line(f"hpo job {job_id}: {'stopped; the command' if stop.requested else 'the command'} exited with code {code}")
    status = JobStatus(state, code, started, clock())
    _write_quietly(status, volume, study, job_id)
    return status


def command_env(env: Mapping[str, str], python_path: list[str]) -> dict[str, str]:
    """The command's environment: the worker's, less :data:`WITHHELD_ENV`, with ``python_path`` first on ``PYTHONPATH``."""
    out = {name: value for name, value in env.items() if name not in WITHHELD_ENV}
    paths = [*python_path, *(p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p)]
    if paths:
        out["PYTHONPATH"] = os.pathsep.join(paths)
    out["PYTHONUNBUFFERED"] = "1"  # a Python command's lines reach the log as it prints them
    return out


class _LogSink:
    """The job's ``log.txt`` on the volume (appends; one writer: this runner), and this process's own stdout."""

    def __init__(self, volume: Volume, key: str) -> None:
        self._volume = volume
        self._key = key
        self._failed = False

    def write(self, data: bytes) -> None:
        out = getattr(sys.stdout, "buffer", None)
        if out is not None:
            out.write(data)
            out.flush()
        else:  # a text-only stdout (a test's)
            sys.stdout.write(data.decode(errors="replace"))
        try:
            self._volume.append_bytes(self._key, data)
        except (VolumeError, OSError) as exc:  # the volume may be failing: the command goes on regardless
            if not self._failed:
                self._failed = True
                log.warning("cannot write the job's log %s (%s); its output goes to the worker's own log", self._key, exc)

    def line(self, text: str) -> None:
        self.write((text + "\n").encode())


def _pump(proc: subprocess.Popen[bytes], sink: _LogSink) -> None:
    """Copy the command's output to ``sink`` until it ends: at most :data:`FLUSH_SECONDS` late, in pieces of ``FLUSH_BYTES``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = bytearray()
    flushed_at = time.monotonic()
    exited_quiet = 0
    while True:
        ready, _, _ = select.select([fd], [], [], FLUSH_SECONDS)
        if ready:
            chunk = os.read(fd, FLUSH_BYTES)
            if not chunk:
                break
            buffer += chunk
        elif proc.poll() is not None:
            # The command exited but something it started still holds the pipe: stop after one more quiet second.
            exited_quiet += 1
            if exited_quiet >= 2:
                break
        if buffer and (len(buffer) >= FLUSH_BYTES or time.monotonic() - flushed_at >= FLUSH_SECONDS):
            sink.write(bytes(buffer))
            buffer.clear()
            flushed_at = time.monotonic()
    if buffer:
        sink.write(bytes(buffer))
    proc.stdout.close()


class _Stop:
    """Whether SIGTERM asked this worker to stop while the command ran."""

    requested = False


def _forward_sigterm(proc: subprocess.Popen[bytes]) -> _Stop:
    """On SIGTERM (the worker is being stopped), pass it on to the command and note it; the pump sees the end."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        return stop  # only the main thread may handle signals (a test calling in from a thread)

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.requested = True
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, handle)
    return stop


def _write_quietly(status: JobStatus, volume: Volume, study: str, job_id: str) -> None:
    """Write the job's final status; if the volume refuses, say so (``hpo job`` then finds the job lost)."""
    try:
        status.write(volume, study, job_id)
    except (VolumeError, OSError) as exc:
        log.warning("cannot write job %s's status (%s, exit code %s): %s", job_id, status.state, status.exit_code, exc)
