"""What the controller knows of each running trial, and what a run reports at its end."""

from __future__ import annotations

from dataclasses import dataclass, field

from hpo.backends import AttemptRef, WorkerHandle
from hpo.events import EventTail


@dataclass
class TrialRun:
    """The controller's view of one running trial (its current attempt, what reached the study, its worker)."""

    number: int
    trial_id: int
    attempt: int
    tail: EventTail
    reported: set[int] = field(default_factory=set)
    last_step: int | None = None
    last_value: float | None = None
    handle: WorkerHandle | None = None
    finished: bool = False
    queued_until: float | None = None  # no capacity: when to try launching again
    queue_tries: int = 0
    stopping: bool = False  # the budget is spent: told to stop, parked once its worker is gone
    unconfirmed: bool = False  # its create got no clear answer: the next listing says whether it exists
    interruption: str | None = None  # the current attempt said an infrastructure fault ended it
    started_at: float | None = None  # provider-clock time the current attempt's worker began (its time limit)

    @property
    def ref(self) -> AttemptRef:
        return AttemptRef(self.number, self.attempt)


@dataclass
class RunSummary:
    """What a run did, for the CLI's last line and ``--json``."""

    study: str
    complete: int
    pruned: int
    failed: int
    running: int
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, object] | None
    seconds: float
    stopped: str | None = None  # why the run ended before the study did (balance or budget out)
    spent_usd: float = 0.0  # the whole study's spend so far (all runs)
    gpu_hours: float = 0.0


def duration(seconds: float) -> str:
    """``42s``, ``3m``, ``2h05m``: how long, at a glance."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
