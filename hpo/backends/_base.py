"""The backend interface: turns a trial's attempt into a running worker (process or pod).

The controller speaks only these types; a backend translates them to its
world (``subprocess`` for ``local``, RunPod's API for ``runpod``) in one place.
Contracts, as the controller relies on them:

* :meth:`Backend.launch` returns as soon as the worker is accepted; it never
  waits for it to run.
* :meth:`Backend.list_live` is one look at everything of the study that is
  alive, matched to attempts by name (env, pod name), so a worker started just
  before a controller crash is still found.
* :meth:`Backend.terminate` returns at once and never raises for a worker that
  is already gone.
* One attempt, one worker: where two live workers run the same attempt (a
  create answered 500 although it made a pod, a crashed controller's retry),
  :meth:`Backend.list_live` keeps the oldest and :meth:`Backend.extras` names
  the others, so the controller meters and terminates them.
* Time on the provider's clock: :meth:`Backend.provider_now` says what time
  the provider bills by, where it can tell (a rehearsal's fake RunPod runs
  faster than the wall clock).
* What a worker costs travels with its handle (:class:`~hpo.workers.Billing`): the rate it
  bills at and when its billing began, so the controller can meter every
  attempt without knowing where it runs. :meth:`Backend.launch_rate` says what
  the next launch may cost at most, and :meth:`Backend.billed_usd` what the
  provider actually charged, for the reconciliation at the end of a run.

* One-off jobs (``hpo job``): :meth:`Backend.launch_job` starts a worker for
  a job, named apart from trial workers so that :meth:`Backend.list_live`
  never lists it; :meth:`Backend.list_jobs` and :meth:`Backend.terminate_job`
  find and end it. A backend that cannot run jobs keeps the defaults, which
  refuse in one line.

* Warm workers (a pool of long-lived workers, each running attempt after
  attempt: :mod:`hpo.pool`): :meth:`Backend.launch_worker` starts worker
  ``index`` of the study (a process, a pod named ``hpo-<study>-w<index>``)
  with the study's address and ``HPO_WORKER=<index>``, never an attempt's
  variables, and returns at once; :meth:`Backend.list_workers` is one look at
  every live worker by index (on RunPod the same one listing per poll that
  :meth:`Backend.list_live` makes: calling both in one poll costs one call);
  of two live workers with one index the oldest is listed and the others are
  :meth:`Backend.worker_extras`; :meth:`Backend.terminate_worker` stops one at
  once and never raises for one already gone. :meth:`Backend.list_live` never
  lists a warm worker and :meth:`Backend.list_workers` never an attempt's or a
  job's. A worker carries its :class:`~hpo.workers.Billing` from its creation,
  and :meth:`Backend.billed_usd` takes its id like any other.
  :attr:`Backend.supports_workers` says whether a backend has them; one that
  does not keeps the defaults, which refuse in one line.

The words shared with the cost meter (:class:`~hpo.workers.AttemptRef`,
:class:`~hpo.workers.WorkerHandle`, :class:`~hpo.workers.Billing`) live in
:mod:`hpo.workers`, below both packages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from hpo.cost import PriceBook
from hpo.errors import BackendError
from hpo.jobs import JobRequest, JobWorker
from hpo.workers import AttemptRef, PoolWorker, WorkerHandle

WORKER_INDEX_ENV = "HPO_WORKER"
"""What makes ``python -m hpo.agent`` a warm worker, holding its index (the same name as ``hpo.pool.WORKER_ENV``)."""

_ATTEMPT_ENV = ("HPO_TRIAL", "HPO_ATTEMPT")


def warm_worker_env(base: Mapping[str, str], index: int, env: Mapping[str, str]) -> dict[str, str]:
    """A warm worker's environment: ``base`` (an attempt's, whose trial and attempt are dropped), its index, ``env``.

    ``env`` (the pool's settings: ``HPO_WORKER_POLL``, ``HPO_WORKER_IDLE_LIMIT``)
    may add variables but never name an attempt, nor change what says whose
    worker this is (``HPO_STUDY``, ``HPO_VOLUME``, ``HPO_WORKER``): that is a
    :class:`BackendError`, in one line.
    """
    if index < 0:
        raise BackendError(f"worker index {index} is negative")
    fixed = {key: value for key, value in base.items() if key not in _ATTEMPT_ENV}
    fixed[WORKER_INDEX_ENV] = str(index)
    for key, value in env.items():
        if key in _ATTEMPT_ENV:
            raise BackendError(f"worker {index}: its environment may not name an attempt ({key})")
        if key in ("HPO_STUDY", "HPO_VOLUME", WORKER_INDEX_ENV) and value != fixed.get(key):
            raise BackendError(f"worker {index}: its environment may not change {key} ({value!r})")
    return {**fixed, **env}


@dataclass(frozen=True)
class LaunchRate:
    """The most one more worker may cost per hour, and the GPUs it holds (for the budget guard)."""

    usd_per_hr: float
    gpu_count: int


class Backend(ABC):
    """Runs attempts somewhere. One instance serves one study."""

    name: str

    @abstractmethod
    def launch(self, ref: AttemptRef) -> WorkerHandle:
        """Start a worker for ``ref`` and return its handle without waiting for it to run."""

    @abstractmethod
    def list_live(self) -> dict[AttemptRef, WorkerHandle]:
        """Every live worker of the study, by the attempt it runs (one call per poll cycle)."""

    @abstractmethod
    def terminate(self, handle: WorkerHandle) -> None:
        """Stop the worker now; silently succeed if it is already gone."""

    def extras(self) -> list[WorkerHandle]:
        """Surplus live workers seen by the last :meth:`list_live` that duplicate an attempt an older worker runs.

        :meth:`list_live` keeps, per attempt, the oldest worker (by creation
        time, then id); the others are listed here, with their billing, and
        the controller meters and terminates them. Default: none.
        """
        return []

    def provider_now(self) -> float | None:
        """Epoch seconds now on the provider's clock, as the last listing's workers report it.

        None: the backend cannot tell; use the wall clock. Never goes backwards.
        """
        return None

    def reap_dead(self) -> list[WorkerHandle]:
        """Dispose of the study's dead workers seen by the last :meth:`list_live` (exited pods).

        A dead worker runs nothing but may still cost (a stopped pod keeps its
        disk), so the controller calls this every cycle. Returns what it removed.
        """
        return []

    def launch_rate(self) -> LaunchRate:
        """The most the next :meth:`launch` may cost per hour (its dearest candidate); free by default."""
        return LaunchRate(0.0, 0)

    def prices(self) -> PriceBook | None:
        """The price list :meth:`launch_rate` judges by (None: this backend's workers are free)."""
        return None

    def billed_usd(self, worker_ids: list[str], since: float) -> dict[str, float]:
        """USD the provider charged for each worker since ``since`` (epoch seconds), as its bill says.

        The ground truth a run reconciles its own estimates against. A worker
        missing from the answer has no bill yet (or the backend has no bill to
        read: the default, for a backend whose workers cost nothing).
        """
        return {}

    def launch_job(self, request: JobRequest) -> JobWorker:
        """Start a worker for one-off job ``request.job_id`` and return without waiting for it to run.

        The worker runs ``python -m hpo.agent`` with :func:`hpo.jobs.job_env`
        (never a trial's variables) and the study's volume, and is named so
        that :meth:`list_live` never counts it. Default: this backend runs no jobs.
        """
        raise BackendError(f"the {self.name} backend cannot run one-off jobs")

    def list_jobs(self) -> list[JobWorker]:
        """Every job worker of the study the provider still lists (live, or dead but not yet terminated)."""
        return []

    def terminate_job(self, worker: JobWorker) -> None:
        """Stop a job's worker now; silently succeed if it is already gone."""
        raise BackendError(f"the {self.name} backend cannot run one-off jobs")

    # -- warm workers -------------------------------------------------------------------

    @property
    def supports_workers(self) -> bool:
        """Whether this backend runs warm workers (:meth:`launch_worker` and the rest); False by default."""
        return False

    def launch_worker(self, index: int, env: Mapping[str, str]) -> PoolWorker:
        """Start warm worker ``index`` of the study with ``env`` added to its own, and return without waiting.

        Its environment is the study's address (``HPO_STUDY``, ``HPO_VOLUME``)
        and ``HPO_WORKER=<index>``, never ``HPO_TRIAL``/``HPO_ATTEMPT``; it is
        chosen and placed as an attempt's worker is. Default: this backend has
        no warm workers.
        """
        raise BackendError(f"the {self.name} backend cannot run warm workers")

    def list_workers(self) -> dict[int, PoolWorker]:
        """Every live warm worker of the study, by index (one listing; the oldest of one index's workers)."""
        raise BackendError(f"the {self.name} backend cannot run warm workers")

    def worker_extras(self) -> list[PoolWorker]:
        """Live warm workers of the last :meth:`list_workers` whose index an older worker holds (to terminate)."""
        return []

    def terminate_worker(self, worker: PoolWorker) -> None:
        """Stop a warm worker now; silently succeed if it is already gone."""
        raise BackendError(f"the {self.name} backend cannot run warm workers")

    def wind_down(self) -> None:  # noqa: B027  nothing to end by default, not an abstract method
        """The run is over: end workers that run nothing the controller wants (warm workers); by default none."""

    def close(self) -> None:  # noqa: B027  a hook with nothing to release by default, not an abstract method
        """Release clients and files; live workers stay alive (the next controller adopts them)."""
