"""A study's trials as rows: state, last step and value, attempts, worker.

Read-only: it opens the journal as a reader, so it runs beside a live
controller (on the same machine or another one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from hpo.config import StudyConfig
from hpo.controller._controller import ATTR_ATTEMPTS, ATTR_ERROR, ATTR_PREEMPTIONS
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


def _worker(volume: Volume, layout: StudyLayout, trial: int, attempts: int) -> str | None:
    if attempts == 0:
        return None
    try:
        launch = volume.read_json(layout.launch(trial, attempts - 1))
    except HpoError:
        return None
    if launch.get("backend") == "local":
        return f"pid {launch.get('pid')}"
    return str(launch.get("pod_id") or launch.get("backend"))


def study_rows(config: StudyConfig, volume: Volume, *, cache_dir: Path | None = None) -> list[TrialRow] | None:
    """Every trial of the study, in order; None if the study has not been run yet."""
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
                state=trial.state.name.lower(),
                last_step=last_step,
                last_value=steps[last_step] if last_step is not None else None,
                value=trial.value if trial.state == TrialState.COMPLETE else None,
                attempts=attempts,
                preemptions=int(trial.user_attrs.get(ATTR_PREEMPTIONS, 0)),
                params=dict(trial.params),
                worker=_worker(volume, layout, trial.number, attempts) if trial.state == TrialState.RUNNING else None,
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
