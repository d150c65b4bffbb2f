"""What pruning saved, and what the study spent.

A pruned trial stopped at its last step; had it run to ``fidelity.max_step``
it would have cost the steps it did not run at the price per step it
actually paid (its cost over the steps it reached: provisioning, image pull
and preemptions included, so the figure is what such a trial really costs).
The sum over pruned trials is what pruning saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Savings:
    """Pruning's savings and the study's spend (NaN-free: unknown costs count as 0)."""

    pruned_trials: int
    steps_saved: int
    gpu_hours_saved: float
    usd_saved: float
    cpu_seconds_saved: float
    spent_usd: float
    gpu_hours: float
    cpu_seconds: float


def _num(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def pruning_savings(frame: pd.DataFrame, max_step: int | None) -> Savings:
    """The savings of every pruned trial in ``frame`` (see the module docstring), and the totals.

    ``max_step`` None (the study declares no ``fidelity.max_step``): a full trial's length is unknown, so none is counted.
    """
    steps = usd = gpu_s = cpu_s = 0.0
    pruned = 0
    if not frame.empty:
        for row in frame[frame["state"] == "pruned"].itertuples():
            reached = int(row.last_step) if not pd.isna(row.last_step) else 0
            if max_step is None or reached <= 0 or reached >= max_step:
                continue  # nothing run, nothing to scale; or pruned at the very end
            pruned += 1
            left = max_step - reached
            steps += left
            usd += _num(row.cost_usd) / reached * left
            gpu_s += _num(row.gpu_seconds) / reached * left
            cpu_s += _num(row.cpu_seconds) / reached * left
    return Savings(
        pruned_trials=pruned,
        steps_saved=int(steps),
        gpu_hours_saved=gpu_s / 3600.0,
        usd_saved=usd,
        cpu_seconds_saved=cpu_s,
        spent_usd=sum(_num(v) for v in frame.get("cost_usd", [])),
        gpu_hours=sum(_num(v) for v in frame.get("gpu_seconds", [])) / 3600.0,
        cpu_seconds=sum(_num(v) for v in frame.get("cpu_seconds", [])),
    )
