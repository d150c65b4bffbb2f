"""``Controller.run()`` end to end over the scripted backend: a whole small study, in milliseconds.

Issue 13. The workers are played from the backend's ``on_launch`` hook: at
its launch each one writes what its trial's script says (reports, a
verdict) and exits, or stays alive to be pruned. The manual clock is also
``run()``'s sleep, so the poll interval passes at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from controller_harness import Seam
from optuna.trial import TrialState

from hpo.backends import AttemptRef, WorkerHandle
from hpo.trial_attrs import ATTR_ATTEMPTS, ATTR_ERROR, ATTR_PREEMPTIONS

MEDIAN = "{type: median, n_startup_trials: 1, n_warmup_steps: 0}"


@pytest.mark.parametrize("volume", ["memory", "directory"])
def test_a_small_study_runs_to_completion_and_the_summary_counts_every_outcome(
    tmp_path: Path, volume: Literal["memory", "directory"]
) -> None:
    seam = Seam(tmp_path, pruner=MEDIAN, trials=4, concurrency=2, volume=volume)

    def play(handle: WorkerHandle) -> None:
        trial, attempt = handle.ref.trial, handle.ref.attempt
        assert seam.volume.read_json(seam.layout.spec(trial))["trial"] == trial  # its spec was written first
        if trial == 0:  # a good curve, finished
            seam.reports(0, {s: 0.1 for s in range(1, 6)})
            seam.write(0, {"type": "done", "value": 0.1})
        elif trial == 1:  # the objective raises
            seam.write(1, {"type": "error", "message": "ValueError: boom"})
        elif trial == 2 and attempt == 0:  # preempted after one (promising) step
            seam.reports(2, {1: 0.09})
        elif trial == 2:  # resumed from its checkpoint: repeats step 1 (the first value stands), finishes best
            seam.reports(2, {1: 0.3, 2: 0.08, 3: 0.07, 4: 0.06, 5: 0.05}, attempt=1)
            seam.write(2, {"type": "done", "value": 0.05}, attempt=1)
        else:  # trial 3: a bad curve, and it would go on forever
            seam.reports(3, {1: 9.0, 2: 9.0})
            return
        seam.backend.gone(trial, attempt)  # the worker exits

    seam.backend.on_launch = play
    summary = seam.run()

    assert (summary.complete, summary.pruned, summary.failed, summary.running) == (2, 1, 1, 0)
    assert (summary.best_trial, summary.best_value) == (2, 0.05)
    assert summary.best_params == seam.trial(2).params
    assert summary.stopped is None and summary.spent_usd == 0.0 and summary.study == "seam"
    assert summary.seconds == 3 * seam.config.poll_interval  # four polls, three waits between them

    assert seam.states() == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.PRUNED]
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0), AttemptRef(2, 0), AttemptRef(3, 0), AttemptRef(2, 1)]
    assert seam.backend.terminated == ["w3"]  # the pruned one; the others exited by themselves
    assert seam.backend.alive == {}
    assert seam.trial(1).user_attrs[ATTR_ERROR] == "ValueError: boom"
    assert seam.trial(2).intermediate_values == {1: 0.09, 2: 0.08, 3: 0.07, 4: 0.06, 5: 0.05}
    assert (seam.trial(2).user_attrs[ATTR_ATTEMPTS], seam.trial(2).user_attrs[ATTR_PREEMPTIONS]) == (2, 1)
    assert (seam.control(3) or {}).get("action") == "prune"
    assert seam.controller.lease.current() is None  # the lease is released at the end

    # What the run left on the volume is the whole story: the next `hpo run` finds nothing to do.
    seam.controller = seam.new_controller(cache="cache-2")
    again = seam.run()
    assert (again.complete, again.pruned, again.failed, again.best_trial) == (2, 1, 1, 2)
    assert again.seconds == 0 and len(seam.backend.launched) == 5


def test_a_run_ends_when_failures_in_a_row_stop_the_launching(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=10, concurrency=1)

    def crash(handle: WorkerHandle) -> None:
        seam.write(handle.ref.trial, {"type": "error", "message": "ModuleNotFoundError: No module named 'nope'"})
        seam.backend.gone(handle.ref.trial)

    seam.backend.on_launch = crash
    summary = seam.run()
    assert (summary.failed, summary.complete, summary.running) == (3, 0, 0)  # max_failures_in_a_row defaults to 3
    assert summary.stopped is not None and "3 trials in a row failed with the same error" in summary.stopped
    assert len(seam.backend.launched) == 3 and len(seam.study().trials) == 3
