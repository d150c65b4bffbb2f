"""A test objective with a known learning curve: loss(step) = x + 1 / step.

It trains "slowly" (``pace`` seconds per step), checkpoints every step and
resumes from the checkpoint, so tests can interrupt it anywhere and compare
the curve with the formula. Trial ``fail_trial`` (a param, -1 for none)
raises at step 2, to test a failing objective; with ``garbage`` true, trial 0
writes a garbage line and a torn report into its own event file at step 2.
With a ``gate`` parameter (a file path; ``{trial}`` in it is the trial's
number), every trial waits at step 2 until the test creates that file: a test
holds a study running that way, never by hoping it is slow enough.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import optuna


def curve(x: float, step: int) -> float:
    return x + 1.0 / step


def _own_event_file(trial: Any) -> Path:
    # This process is the one writer of its attempt's event file, so it may append raw bytes.
    root = Path(os.environ["HPO_VOLUME"])
    return root / f"hpo/{trial.study_name}/trials/{trial.number}/attempts/{trial.attempt}/events.jsonl"


def _append_raw(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)
        f.flush()


def write_garbage_and_a_torn_report(trial: Any, step: int, value: float) -> None:
    """Append a garbage line, then a report in two halves with a pause between them."""
    path = _own_event_file(trial)
    _append_raw(path, b"{this is not an event\n")
    line = json.dumps({"type": "report", "step": step, "value": value}).encode() + b"\n"
    _append_raw(path, line[:9])
    time.sleep(0.4)  # the controller polls the torn line several times meanwhile
    _append_raw(path, line[9:])


def _wait_for_gate(path: Path, deadline: float = 600.0) -> None:
    """Hold the trial until the test opens ``path``; a test that died never leaves it forever."""
    started = time.monotonic()
    while not path.exists() and time.monotonic() - started < deadline:
        time.sleep(0.05)


def objective(trial: Any) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    pace = float(trial.suggest_categorical("pace", None))
    fail_trial = int(trial.suggest_categorical("fail_trial", None))
    garbage = bool(trial.suggest_categorical("garbage", None))
    gate = trial.params.get("gate")  # a file the test writes when this trial may go on (none: never waits)
    state = trial.load_checkpoint() or {"steps_run": 0}
    for step in range(trial.resume_step + 1, trial.max_step + 1):
        time.sleep(pace)
        if gate and gate != "none" and step == 2:
            _wait_for_gate(Path(gate.format(trial=trial.number)))
        if trial.number == fail_trial and step == 2:
            raise RuntimeError(f"boom at step {step}")
        state["steps_run"] += 1
        if trial.number == 0 and step == 2 and garbage:
            write_garbage_and_a_torn_report(trial, step, curve(x, step))
        else:
            trial.report(curve(x, step), step)
        trial.save_checkpoint(state, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    trial.set_user_attr("steps_run_last_attempt", state["steps_run"])
    return curve(x, trial.max_step)


def stubborn(trial: Any) -> float:
    """Ignores SIGTERM and never finishes: only SIGKILL stops it."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    trial.report(1.0, 1)
    while True:
        time.sleep(0.1)
