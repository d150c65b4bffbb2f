"""A test objective that starts a process of its own, as joblib (``n_jobs=-1``) or a DataLoader's workers do.

The child inherits the trial's environment (``HPO_STUDY``, ``HPO_TRIAL``, ...)
and lives while the trial runs. The trial completes only if the child is still
alive at its last step: a backend that took the child for a second worker of
the attempt and terminated it fails the trial. The child's pid goes into the
user attribute ``child_pid``, so a test can find it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any


def objective(trial: Any) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    pace = float(trial.suggest_categorical("pace", None))
    # No new session: the child stays in the agent's process group, as a library's workers do.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        trial.set_user_attr("child_pid", child.pid)
        for step in range(1, trial.max_step + 1):
            time.sleep(pace)
            if child.poll() is not None:
                raise RuntimeError(f"the objective's own process ended at step {step} (code {child.returncode})")
            trial.report(x + 1.0 / step, step)
        return x + 1.0 / trial.max_step
    finally:
        child.kill()
        child.wait()
