"""The budget guard: ``budget.usd`` and ``budget.gpu_hours`` of a study, held to one poll interval.

The controller looks at the world once per poll, so between two looks the
pods it runs bill on unseen. The guard therefore judges the spend *projected
to the next look*: what has been billed, plus what everything billing now
will add over one horizon (the poll interval, or the last gap between polls
if that was longer). When that reaches the budget, the study stops launching
and stops its pods now; a launch is refused when the projection including the
new pod reaches it. Spend so can pass the budget only when a poll comes later
than the last one did, and then by that delay's worth at most.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Spend:
    """What a study has spent, and what bills now."""

    usd: float
    gpu_seconds: float
    usd_per_hr: float = 0.0  # the rate of everything billing now
    gpus: int = 0  # GPUs billing now

    def plus(self, usd_per_hr: float, gpus: int) -> Spend:
        """The same spend with one more worker billing."""
        return Spend(self.usd, self.gpu_seconds, self.usd_per_hr + usd_per_hr, self.gpus + gpus)

    def projected(self, horizon: float) -> tuple[float, float]:
        """(USD, GPU-seconds) at ``horizon`` seconds from now, if nothing changes."""
        return self.usd + self.usd_per_hr * horizon / 3600.0, self.gpu_seconds + self.gpus * horizon


@dataclass(frozen=True)
class BudgetGuard:
    """A study's money and GPU-time limits (None: no limit)."""

    usd: float | None = None
    gpu_hours: float | None = None

    @property
    def limited(self) -> bool:
        return self.usd is not None or self.gpu_hours is not None

    def exhausted(self, spend: Spend, horizon: float) -> str | None:
        """Why the study must stop now (its spend reaches a limit before the next look), or None."""
        usd, gpu_seconds = spend.projected(horizon)
        if self.usd is not None and usd >= self.usd:
            return (
                f"budget.usd ${self.usd:g} reached (${spend.usd:.4f} spent, "
                f"${spend.usd_per_hr:.3f}/h billing)"
            )
        if self.gpu_hours is not None and gpu_seconds >= self.gpu_hours * 3600.0:
            return (
                f"budget.gpu_hours {self.gpu_hours:g} reached ({spend.gpu_seconds / 3600.0:.4f} GPU-hours used, "
                f"{spend.gpus} GPU(s) billing)"
            )
        return None

    def refuses_launch(self, spend: Spend, horizon: float, usd_per_hr: float, gpus: int) -> str | None:
        """Why a worker of that rate may not start now, or None."""
        return self.exhausted(spend.plus(usd_per_hr, gpus), horizon)

    def left(self, spend: Spend) -> tuple[float | None, float | None]:
        """(USD, GPU-hours) left, never below zero (None where there is no limit)."""
        usd = None if self.usd is None else max(0.0, self.usd - spend.usd)
        hours = None if self.gpu_hours is None else max(0.0, self.gpu_hours - spend.gpu_seconds / 3600.0)
        return usd, hours
