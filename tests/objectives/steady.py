"""A test objective with a known learning curve: loss(step) = x + 1 / step.

It trains "slowly" (``pace`` seconds per step), checkpoints every step and
resumes from the checkpoint, so tests can interrupt it anywhere and compare
the curve with the formula. Trial ``fail_trial`` (a param, -1 for none)
raises at step 2, to test a failing objective.
"""

from __future__ import annotations

import time
from typing import Any

import optuna


def curve(x: float, step: int) -> float:
    return x + 1.0 / step


def objective(trial: Any) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    pace = float(trial.suggest_categorical("pace", None))
    fail_trial = int(trial.suggest_categorical("fail_trial", None))
    state = trial.load_checkpoint() or {"steps_run": 0}
    for step in range(trial.resume_step + 1, trial.max_step + 1):
        time.sleep(pace)
        if trial.number == fail_trial and step == 2:
            raise RuntimeError(f"boom at step {step}")
        state["steps_run"] += 1
        trial.report(curve(x, step), step)
        trial.save_checkpoint(state, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    trial.set_user_attr("steps_run_last_attempt", state["steps_run"])
    return curve(x, trial.max_step)
