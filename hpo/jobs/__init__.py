"""One-off jobs: a command run once where a study's trials run (``hpo job``), e.g. preparing a dataset.

A job runs on a worker of the study's backend (a pod of its image with its
network volume mounted; a local process), named apart from trial workers so
no controller, ``hpo status`` or ``hpo cleanup`` takes it for one. Its runner
(``python -m hpo.agent`` with :data:`JOB_ENV` set, :mod:`hpo.agent._job`)
writes the command's output to ``hpo/<study>/jobs/<id>/log.txt`` and its exit
status to ``status.json``, then ends its worker (a pod terminates itself: RunPod
restarts a container that exits). ``hpo job`` follows the log and exits with
the command's exit code.

Where things live: ``_records.py``, the job's id, environment and files (shared
by ``hpo job``, the backends and the runner; it imports no backend);
``_client.py``, ``hpo job``'s side (start, follow, end, cancel, list), which
speaks to a backend through :class:`JobBackend`.
"""

from __future__ import annotations

from hpo.jobs._client import (
    JobBackend,
    JobFollower,
    JobRow,
    cancel_job,
    end_job,
    job_rows,
    start_job,
    workers_of,
)
from hpo.jobs._records import (
    EXIT_LOST,
    EXITED,
    JOB_ENV,
    JOB_STUDY_ENV,
    LOST,
    NOT_STARTED,
    RUNNING,
    TERMINATED,
    VOLUME_ENV,
    JobFileError,
    JobRequest,
    JobSpec,
    JobStatus,
    JobWorker,
    check_job_id,
    is_job_id,
    job_env,
    new_job_id,
)

__all__ = [
    "EXITED",
    "EXIT_LOST",
    "JOB_ENV",
    "JOB_STUDY_ENV",
    "LOST",
    "NOT_STARTED",
    "RUNNING",
    "TERMINATED",
    "VOLUME_ENV",
    "JobBackend",
    "JobFileError",
    "JobFollower",
    "JobRequest",
    "JobRow",
    "JobSpec",
    "JobStatus",
    "JobWorker",
    "cancel_job",
    "check_job_id",
    "end_job",
    "is_job_id",
    "job_env",
    "job_rows",
    "new_job_id",
    "start_job",
    "workers_of",
]
