"""A study's trials as a pandas frame: one row per trial, the columns the report and its CSV show.

Columns: ``trial``, ``state``, one ``param_<name>`` per parameter,
``last_step``, ``value`` (Optuna's: the final value of a complete trial, the
last report of a pruned one), ``best_value`` (the best value the trial
reported or returned: the loss the front is drawn with), ``cost_usd``,
``gpu_seconds``, ``gpu_hours``, ``cpu_seconds``, ``gpu_type``,
``cost_source`` (``billing``, ``estimate``, ``mixed``, ``attrs`` or empty),
``attempts``, ``preemptions``, ``started``, ``finished``, ``duration_s`` and
``error``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial

from hpo.cost import TrialCost
from hpo.trial_attrs import ATTR_ATTEMPTS, ATTR_CPU_SECONDS, ATTR_PREEMPTIONS, float_attr, int_attr

BASE_COLUMNS = ("trial", "state")
TAIL_COLUMNS = (
    "last_step",
    "value",
    "best_value",
    "cost_usd",
    "gpu_seconds",
    "gpu_hours",
    "cpu_seconds",
    "gpu_type",
    "cost_source",
    "attempts",
    "preemptions",
    "started",
    "finished",
    "duration_s",
    "error",
)


def best_value(trial: FrozenTrial, direction: str) -> float:
    """The best value ``trial`` reported or returned (NaN if none)."""
    values = [v for v in trial.intermediate_values.values() if v is not None and math.isfinite(v)]
    if trial.value is not None and math.isfinite(trial.value):
        values.append(trial.value)
    if not values:
        return math.nan
    return min(values) if direction == "minimize" else max(values)


def _cpu_seconds(cost: TrialCost | None, attrs: Mapping[str, Any]) -> float:
    # The records include attempts that ended after the trial was told (a pruned one's last words).
    if cost is not None and cost.cpu_seconds is not None:
        return cost.cpu_seconds
    return float_attr(attrs, ATTR_CPU_SECONDS, math.nan)


def trial_frame(trials: Iterable[FrozenTrial], costs: Mapping[int, TrialCost], direction: str) -> pd.DataFrame:
    """One row per trial, in trial order (an empty frame, with the base columns, for no trials)."""
    rows: list[dict[str, Any]] = []
    params: list[str] = []
    for trial in trials:
        for name in trial.params:
            if name not in params:
                params.append(name)
    for trial in sorted(trials, key=lambda t: t.number):
        attrs = trial.user_attrs
        steps = trial.intermediate_values
        cost = costs.get(trial.number)
        started, finished = trial.datetime_start, trial.datetime_complete
        row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name.lower()}
        row.update({f"param_{name}": trial.params.get(name) for name in params})
        row.update(
            last_step=max(steps) if steps else None,
            value=trial.value,
            best_value=best_value(trial, direction),
            cost_usd=cost.usd if cost is not None else math.nan,
            gpu_seconds=cost.gpu_seconds if cost is not None else math.nan,
            gpu_hours=cost.gpu_seconds / 3600.0 if cost is not None else math.nan,
            cpu_seconds=_cpu_seconds(cost, attrs),
            gpu_type=cost.gpu_type if cost is not None else None,
            cost_source=cost.source if cost is not None else "",
            attempts=int_attr(attrs, ATTR_ATTEMPTS),
            preemptions=int_attr(attrs, ATTR_PREEMPTIONS),
            started=started.isoformat(timespec="seconds") if started else None,
            finished=finished.isoformat(timespec="seconds") if finished else None,
            duration_s=(finished - started).total_seconds() if started and finished else math.nan,
            error=attrs.get("error"),
        )
        rows.append(row)
    columns = [*BASE_COLUMNS, *(f"param_{name}" for name in params), *TAIL_COLUMNS]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"last_step": "Int64"}) if not frame.empty else frame
