"""A job's identity and its files on the volume: what ``hpo job``, the backends and the runner share.

A job is one command run once on a worker of the study's backend (a pod of
its image with its network volume, or a local process), for what must happen
where the trials run but is no trial: preparing a dataset, say. Three parties
touch it, each through this module:

* ``hpo job`` names it (:func:`new_job_id`), writes what it runs
  (:class:`JobSpec`, ``job.json``), has the backend start a worker for it
  (:class:`JobRequest` in, :class:`JobWorker` out) and follows its log;
* the backend gives the worker :func:`job_env`, never a trial's variables, so
  nothing that looks for a study's trial workers can mistake it for one;
* the runner in the worker (:mod:`hpo.agent._job`) runs the command, writes
  ``log.txt`` and :class:`JobStatus` (``status.json``), then ends its worker.

Everything read back from the volume is validated: any pod of the study can
write there, so a malformed file is a one-line :class:`~hpo.errors.VolumeError`
naming its key, never a traceback or a guess.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from hpo.errors import ConfigError, VolumeError
from hpo.layout import StudyLayout
from hpo.volume import Volume

JOB_ENV = "HPO_JOB"
"""The job's id, in its worker's environment: ``python -m hpo.agent`` runs the job, not an attempt."""

JOB_STUDY_ENV = "HPO_JOB_STUDY"
"""The job's study. Not ``HPO_STUDY``: the local backend finds a study's trial workers by that."""

VOLUME_ENV = "HPO_VOLUME"
"""Where the worker reaches the volume (a pod: its mount path), as for trials."""

_JOB_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4}")
MAX_ARGV_ITEMS = 1000
MAX_ARGV_CHARS = 100_000

# How a job ended (JobStatus.state); "running" is written first, when the command starts.
RUNNING = "running"
EXITED = "exited"  # the command ran and exited (exit_code is its code, 128 + N if signal N killed it)
NOT_STARTED = "not-started"  # the command could not be started (127: not found, 126: not runnable)
TERMINATED = "terminated"  # the worker was told to stop (SIGTERM) while the command ran
LOST = "lost"  # the worker restarted while the command ran: it is not run again
STATES = frozenset({RUNNING, EXITED, NOT_STARTED, TERMINATED, LOST})

EXIT_LOST = 75
"""Exit code of a job whose worker ended (or restarted) before the command did (``EX_TEMPFAIL``, as an
attempt an infrastructure fault ended): nothing says whether the command finished its work."""


def new_job_id(now: float | None = None) -> str:
    """A fresh job id, ``YYYYMMDD-HHMMSS-xxxx`` (UTC, then 4 random hex digits): sorts by start (to the second), reads as a date."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(2)}"


def is_job_id(value: object) -> bool:
    """Whether ``value`` has the shape :func:`new_job_id` gives (nothing else names a job's files or pod)."""
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


def check_job_id(value: str) -> str:
    """``value`` if it is a job id, else a one-line :class:`ConfigError` (for ids given on the command line)."""
    if not is_job_id(value):
        raise ConfigError(f"{value!r} is not a job id: job ids look like 20260821-142233-a3f9 (`hpo job --list`)")
    return value


def job_env(study: str, job_id: str, volume_root: str) -> dict[str, str]:
    """What a job's worker needs to find its job: its id, its study, the volume; never a key or a secret."""
    return {JOB_ENV: job_id, JOB_STUDY_ENV: study, VOLUME_ENV: volume_root}


class JobFileError(VolumeError):
    """A job's file on the volume is malformed (not an outage: reading it again will not help)."""


@dataclass(frozen=True)
class JobRequest:
    """What ``hpo job`` asks a backend for: a worker for job ``job_id``.

    ``gpu_types`` in order of preference (empty: the study's own);
    ``gpu_count`` GPUs (None: the study's). Backends without GPUs refuse both.
    """

    job_id: str
    gpu_types: tuple[str, ...] = ()
    gpu_count: int | None = None


@dataclass(frozen=True)
class JobWorker:
    """A worker (pod, process) a backend lists as running a job of the study.

    ``id`` is the backend's own (a pod id, ``pid@start``); ``status`` its word
    for the worker's state (a pod's: ``provisioning``, ``running``, ``exited``...);
    ``live`` whether it may still run the job (a pod that exited never will,
    but may still cost its disk until terminated); ``detail`` what to show of it.
    """

    job_id: str
    id: str
    status: str
    live: bool = True
    detail: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class JobSpec:
    """What job ``id`` runs (``job.json``, written by ``hpo job`` before its worker starts).

    ``argv`` is the command, run as given (no shell); ``code`` the sha256 of
    the study's objectives snapshot on the volume, which the runner unpacks
    and puts first on the command's ``PYTHONPATH`` (None: none).
    """

    id: str
    study: str
    argv: tuple[str, ...]
    code: str | None = None
    created_at: float = 0.0

    def write(self, volume: Volume) -> None:
        volume.write_json(
            StudyLayout(self.study).job_spec(self.id),
            {"id": self.id, "study": self.study, "argv": list(self.argv), "code": self.code, "created_at": self.created_at},
        )

    @classmethod
    def read(cls, volume: Volume, study: str, job_id: str) -> JobSpec:
        """Job ``job_id``'s spec; :class:`VolumeNotFoundError` if it has none, :class:`VolumeError` if malformed."""
        key = StudyLayout(study).job_spec(job_id)
        raw = _read_object(volume, key)
        argv = raw.get("argv")
        if (
            not isinstance(argv, list)
            or not argv
            or len(argv) > MAX_ARGV_ITEMS
            or not all(isinstance(a, str) and "\x00" not in a for a in argv)
            or sum(len(a) for a in argv) > MAX_ARGV_CHARS
        ):
            raise _bad(volume, key, "argv must be a non-empty list of strings")
        if raw.get("id") != job_id or raw.get("study") != study:
            raise _bad(volume, key, f"it names job {raw.get('id')!r} of study {raw.get('study')!r}")
        code = raw.get("code")
        if code is not None and not isinstance(code, str):
            raise _bad(volume, key, "code must be a string or null")
        return cls(job_id, study, tuple(argv), code, _seconds(raw.get("created_at"), volume, key) or 0.0)


@dataclass(frozen=True)
class JobStatus:
    """How job ``id`` stands (``status.json``, written only by its runner): ``running``, then how it ended.

    ``exit_code`` is what ``hpo job`` exits with once the job has ended (None
    while it runs); ``detail`` one line for people (why it could not start, ...).
    """

    state: str
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    detail: str = ""

    @property
    def ended(self) -> bool:
        return self.state != RUNNING

    def write(self, volume: Volume, study: str, job_id: str) -> None:
        volume.write_json(
            StudyLayout(study).job_status(job_id),
            {
                "state": self.state,
                "exit_code": self.exit_code,
                "started_at": self.started_at,
                "ended_at": self.ended_at,
                "detail": self.detail,
            },
        )

    @classmethod
    def read(cls, volume: Volume, study: str, job_id: str) -> JobStatus | None:
        """The job's status, or None before its runner wrote one; :class:`VolumeError` if malformed."""
        key = StudyLayout(study).job_status(job_id)
        if not volume.exists(key):
            return None
        raw = _read_object(volume, key)
        state, code, detail = raw.get("state"), raw.get("exit_code"), raw.get("detail", "")
        if state not in STATES:
            raise _bad(volume, key, f"unknown state {str(state)[:40]!r}")
        if state == RUNNING and code is not None:
            raise _bad(volume, key, "a running job has no exit code")
        if state != RUNNING and (not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255):
            raise _bad(volume, key, "an ended job needs an exit code from 0 to 255")
        if not isinstance(detail, str):
            raise _bad(volume, key, "detail must be a string")
        return cls(
            state,
            code,
            _seconds(raw.get("started_at"), volume, key),
            _seconds(raw.get("ended_at"), volume, key),
            " ".join(detail.split())[:500],
        )


def _read_object(volume: Volume, key: str) -> dict[str, Any]:
    """The JSON object at ``key``: a failed read stays a plain :class:`VolumeError`, bad content is a :class:`JobFileError`."""
    data = volume.read_bytes(key)
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad(volume, key, "not valid JSON") from None
    if not isinstance(value, dict):
        raise _bad(volume, key, "not a JSON object")
    return value


def _seconds(value: Any, volume: Volume, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e11:
        raise _bad(volume, key, "a time must be epoch seconds")
    return float(value)


def _bad(volume: Volume, key: str, why: str) -> JobFileError:
    return JobFileError(f"{volume.url}: {key}: {why}")
