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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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
class WorkerHandle:
    """A live worker running one attempt.

    ``id`` is the backend's own identifier (a pid, a pod id); ``status`` is our
    word for its state (``starting``, ``running``); ``detail`` holds what
    ``hpo status`` shows about it (GPU type, price, ...).
    """

    ref: AttemptRef
    id: str
    status: str = "running"
    detail: dict[str, Any] = field(default_factory=dict, compare=False)


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

    def reap_dead(self) -> list[WorkerHandle]:
        """Dispose of the study's dead workers seen by the last :meth:`list_live` (exited pods).

        A dead worker runs nothing but may still cost (a stopped pod keeps its
        disk), so the controller calls this every cycle. Returns what it removed.
        """
        return []

    def close(self) -> None:
        """Release clients and files; live workers stay alive (the next controller adopts them)."""
