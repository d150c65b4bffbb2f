"""What runs an attempt, in words every part shares: the attempt, the worker's handle, what it bills.

The controller launches and watches workers through a backend
(:mod:`hpo.backends`) and meters them (:mod:`hpo.cost`); ``hpo status`` and
``hpo cleanup`` show and stop them. All of them speak these three types, so
they live below all of them: this module imports nothing of the project, and
the arrows between the packages that use it point one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class AttemptRef:
    """One attempt of one trial: the unit a backend runs."""

    trial: int
    attempt: int

    def __str__(self) -> str:
        return f"trial {self.trial} attempt {self.attempt}"


@dataclass(frozen=True)
class Billing:
    """What a worker costs while it lives.

    ``usd_per_hr`` is the rate the whole worker bills at (a pod's own ``cost``:
    all its GPUs; 0 for a local process); ``gpu_count`` GPUs are held while it
    bills (0 for a local process); ``started_at`` is when billing began, in
    epoch seconds on the provider's clock (a pod's creation: provisioning and
    image pull are billed), or None when the backend cannot tell.
    """

    usd_per_hr: float | None
    gpu_count: int = 0
    gpu_type: str | None = None
    started_at: float | None = None


@dataclass(frozen=True)
class WorkerHandle:
    """A live worker running one attempt.

    ``id`` is the backend's own identifier (a pid, a pod id); ``status`` is our
    word for its state (``starting``, ``running``); ``detail`` holds what
    ``hpo status`` shows about it (GPU type, price, ...); ``billing`` what it
    costs (None: the backend does not know).
    """

    ref: AttemptRef
    id: str
    status: str = "running"
    detail: dict[str, Any] = field(default_factory=dict, compare=False)
    billing: Billing | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PoolWorker:
    """A live warm worker of the study (a pod, a process) that runs attempt after attempt.

    ``index`` is the worker's number in the study (its pod is named
    ``hpo-<study>-w<index>``); ``id`` the backend's own identifier (a pod id,
    ``pid@start``); ``status`` its state (``starting``, ``running``);
    ``detail`` what ``hpo status`` shows of it; ``billing`` what it costs
    from its creation (provisioning and image pull are billed).
    """

    index: int
    id: str
    status: str = "running"
    detail: dict[str, Any] = field(default_factory=dict, compare=False)
    billing: Billing | None = field(default=None, compare=False)
