"""A study's trials as rows: state, last step and value, attempts, worker.

Read-only: it opens the journal as a reader, so it runs beside a live
controller (on the same machine or another one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from hpo.backends import AttemptRef, WorkerHandle
from hpo.config import StudyConfig
from hpo.controller._controller import ATTR_ATTEMPTS, ATTR_ERROR, ATTR_PREEMPTIONS, ATTR_QUEUED
from hpo.errors import HpoError
from hpo.journal import open_storage
from hpo.layout import StudyLayout
from hpo.volume import Volume


@dataclass(frozen=True)
class TrialRow:
    """One trial as ``hpo status`` shows it."""

    number: int
    state: str
    last_step: int | None
    last_value: float | None
    value: float | None
    attempts: int
    preemptions: int
    params: dict[str, Any]
    worker: str | None
    error: str | None


def _worker(
    volume: Volume, layout: StudyLayout, trial: int, attempts: int, live: Mapping[AttemptRef, WorkerHandle] | None
) -> str | None:
    """What runs the trial's current attempt: from the backend's live view, else its launch record."""
    if attempts == 0:
        return None
    ref = AttemptRef(trial, attempts - 1)
    try:
        launch = volume.read_json(layout.launch(trial, attempts - 1))
    except HpoError:
        launch = {}
    if launch.get("backend") == "local":
        return f"pid {launch.get('pid')}"
    handle = (live or {}).get(ref)
    pod_id = handle.id if handle else launch.get("pod_id")
    if pod_id is None:
        return None
    parts = [f"pod {pod_id}"]
    gpu = (handle.detail.get("gpu_type") if handle else None) or launch.get("gpu_type")
    if gpu:
        parts.append(str(gpu))
    if launch.get("spot") is not None:
        parts.append("spot" if launch["spot"] else "on-demand")
    if handle is not None:
        parts.append(str(handle.detail.get("pod_status", handle.status)))
        uptime = handle.detail.get("uptime_s")
        if uptime is not None:
            parts.append(f"up {uptime / 60:.0f}m")
    elif live is not None:
        parts.append("gone")
    price = (handle.detail.get("cost_per_hr") if handle else None) or launch.get("cost_per_hr")
    if price is not None:
        parts.append(f"${price:.3f}/h")
    return " ".join(parts)


def study_rows(
    config: StudyConfig,
    volume: Volume,
    *,
    live: Mapping[AttemptRef, WorkerHandle] | None = None,
    cache_dir: Path | None = None,
) -> list[TrialRow] | None:
    """Every trial of the study, in order; None if the study has not been run yet.

    ``live`` (the backend's live workers, if it could be asked) adds each pod's
    status and uptime to what the launch records say.
    """
    storage = open_storage(volume, config.name, url=config.storage, cache_dir=cache_dir)
    study = storage.load_study(config.name)
    if study is None:
        return None
    layout = StudyLayout(config.name)
    rows = []
    for trial in study.get_trials(deepcopy=False):
        steps = trial.intermediate_values
        last_step = max(steps) if steps else None
        attempts = int(trial.user_attrs.get(ATTR_ATTEMPTS, 0))
        rows.append(
            TrialRow(
                number=trial.number,
                state="queued" if trial.state == TrialState.RUNNING and trial.user_attrs.get(ATTR_QUEUED) else trial.state.name.lower(),
                last_step=last_step,
                last_value=steps[last_step] if last_step is not None else None,
                value=trial.value if trial.state == TrialState.COMPLETE else None,
                attempts=attempts,
                preemptions=int(trial.user_attrs.get(ATTR_PREEMPTIONS, 0)),
                params=dict(trial.params),
                worker=_worker(volume, layout, trial.number, attempts, live) if trial.state == TrialState.RUNNING else None,
                error=trial.user_attrs.get(ATTR_ERROR),
            )
        )
    return rows


def best_row(rows: list[TrialRow], direction: str) -> TrialRow | None:
    """The completed trial with the best value."""
    done = [r for r in rows if r.value is not None and math.isfinite(r.value)]
    if not done:
        return None
    return (min if direction == "minimize" else max)(done, key=lambda r: r.value)  # type: ignore[arg-type, return-value]
