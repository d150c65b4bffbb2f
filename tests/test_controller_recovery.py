"""A controller that starts after another one died adopts what it left: live workers, strays, vanished workers, reports.

Issue 13: driven one poll at a time over a scripted backend, an in-memory
volume and a manual clock (tests/controller_harness.py). The previous
controller "crashes" by being dropped with its lease left to expire.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from controller_harness import Seam
from optuna.trial import TrialState

from hpo.backends import AttemptRef, Billing, WorkerHandle
from hpo.errors import AuthError, LaunchUnknownError
from hpo.trial_attrs import ATTR_ATTEMPTS, ATTR_ERROR, ATTR_PREEMPTIONS


def _repeated_reports(caught: list[warnings.WarningMessage]) -> list[str]:
    """Optuna's warning for a step reported twice: the controller reported one the study already had."""
    return [str(w.message) for w in caught if "already reported" in str(w.message)]


def test_a_restarted_controller_adopts_the_live_worker_of_the_current_attempt(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {1: 0.5, 2: 0.4})
    seam.controller.cycle()
    seam.reports(0, {3: 0.3})  # written while no controller runs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        controller = seam.crash_and_restart()
        assert set(controller.runs) == {0}
        assert "adopted 1 running trial(s): 0" in seam.messages
        controller.cycle()
    assert _repeated_reports(caught) == []  # steps 1 and 2 were read again, but not reported again

    assert seam.backend.launched == [AttemptRef(0, 0)]  # no relaunch ...
    assert seam.backend.terminated == []  # ... and its worker left alone
    trial = seam.trial(0)
    assert trial.state == TrialState.RUNNING
    assert trial.intermediate_values == {1: 0.5, 2: 0.4, 3: 0.3}
    assert trial.user_attrs[ATTR_ATTEMPTS] == 1 and ATTR_PREEMPTIONS not in trial.user_attrs

    # The adopted worker's verdict is taken by the new controller.
    seam.write(0, {"type": "done", "value": 0.3})
    seam.backend.gone(0)
    controller.cycle()
    assert seam.states() == [TrialState.COMPLETE] and seam.trial(0).value == 0.3
    assert controller.runs == {}


def test_a_restarted_controller_terminates_at_once_the_worker_of_a_finished_trial(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=2)
    seam.controller.begin()
    seam.controller.cycle()
    seam.write(0, {"type": "done", "value": 0.2})  # finished, but its worker does not exit
    seam.controller.cycle()
    assert seam.states() == [TrialState.COMPLETE, TrialState.RUNNING]
    assert seam.backend.terminated == []  # still within the stray grace

    controller = seam.crash_and_restart()
    assert seam.backend.terminated == ["w0"]  # no running trial owns it: terminated on adoption, no grace
    assert "terminating stray worker of trial 0 attempt 0" in seam.messages
    assert set(controller.runs) == {1} and AttemptRef(1, 0) in seam.backend.alive  # trial 1's worker adopted
    controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0)]
    assert seam.states() == [TrialState.COMPLETE, TrialState.RUNNING]


def test_a_restarted_controller_terminates_the_worker_of_a_superseded_attempt(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.controller.begin()
    seam.controller.cycle()
    seam.backend.gone(0)
    seam.controller.cycle()  # attempt 0 seen gone: attempt 1 runs now
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 1)]
    # Attempt 0's worker shows up again (a listing that had missed it): only the current attempt is the trial's.
    ghost = WorkerHandle(AttemptRef(0, 0), "w-ghost", billing=Billing(usd_per_hr=0.0))
    seam.backend.alive[AttemptRef(0, 0)] = ghost

    controller = seam.crash_and_restart()
    assert seam.backend.terminated == ["w-ghost"]
    assert AttemptRef(0, 1) in seam.backend.alive
    controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 1)]
    assert seam.trial(0).state == TrialState.RUNNING and seam.trial(0).user_attrs[ATTR_ATTEMPTS] == 2


def test_a_worker_that_vanished_while_no_controller_ran_is_a_preemption_and_its_trial_resumes(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1, max_attempts=3)
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {1: 0.5, 2: 0.4})
    seam.controller.cycle()
    seam.reports(0, {3: 0.3})  # its last words before the pod went, unwatched
    seam.backend.gone(0)

    controller = seam.crash_and_restart()
    assert set(controller.runs) == {0}
    assert seam.backend.launched == [AttemptRef(0, 0)]
    controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 1)]
    trial = seam.trial(0)
    assert trial.state == TrialState.RUNNING
    assert trial.intermediate_values == {1: 0.5, 2: 0.4, 3: 0.3}  # what it wrote unwatched counts
    assert trial.user_attrs[ATTR_PREEMPTIONS] == 1 and trial.user_attrs[ATTR_ATTEMPTS] == 2
    assert ATTR_ERROR not in trial.user_attrs
    assert any("attempt 0 ended without a result (preempted or killed); resuming as attempt 1" in m for m in seam.messages)


def test_adoption_replays_only_the_steps_the_study_lacks_the_first_value_of_a_step_stands(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1, max_step=6)
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {1: 0.5, 2: 0.4, 3: 0.3})
    seam.controller.cycle()
    seam.backend.gone(0)
    seam.controller.cycle()  # attempt 1 resumes from the checkpoint of step 2
    # While no controller runs, attempt 1 repeats step 3 (another value: the data loader moved on) and goes on.
    seam.reports(0, {3: 0.99, 4: 0.2, 5: 0.1}, attempt=1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seam.crash_and_restart().cycle()
    assert _repeated_reports(caught) == []
    assert seam.trial(0).intermediate_values == {1: 0.5, 2: 0.4, 3: 0.3, 4: 0.2, 5: 0.1}
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 1)]  # attempt 1 adopted, not relaunched

    seam.write(0, {"type": "report", "step": 6, "value": 0.05}, {"type": "done", "value": 0.05}, attempt=1)
    seam.backend.gone(0, attempt=1)
    seam.controller.cycle()
    trial = seam.trial(0)
    assert trial.state == TrialState.COMPLETE and trial.value == 0.05
    assert trial.intermediate_values == {1: 0.5, 2: 0.4, 3: 0.3, 4: 0.2, 5: 0.1, 6: 0.05}


def test_a_verdict_written_while_no_controller_ran_finishes_the_trial_without_a_launch(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=2, concurrency=2)
    seam.controller.begin()
    seam.controller.cycle()
    seam.write(0, {"type": "error", "message": "RuntimeError: CUDA out of memory"})
    seam.backend.gone(0)
    seam.write(1, {"type": "pruned"})  # the agent's own verdict (it read a prune order)
    seam.backend.gone(1)

    seam.crash_and_restart().cycle()
    assert seam.states() == [TrialState.FAIL, TrialState.PRUNED]
    assert seam.trial(0).user_attrs[ATTR_ERROR] == "RuntimeError: CUDA out of memory"
    assert ATTR_PREEMPTIONS not in seam.trial(0).user_attrs and ATTR_PREEMPTIONS not in seam.trial(1).user_attrs
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0)]  # the budget of 2 trials is spent
    assert seam.controller.runs == {}


def test_an_adopted_trial_whose_unwatched_reports_are_bad_is_pruned_at_the_first_poll(tmp_path: Path) -> None:
    seam = Seam(tmp_path, pruner="{type: median, n_startup_trials: 1, n_warmup_steps: 0}", trials=2)
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {s: 0.1 for s in range(1, 6)})
    seam.write(0, {"type": "done", "value": 0.1})
    seam.backend.gone(0)
    seam.controller.cycle()  # trial 0 sets the median; trial 1 launched
    seam.reports(1, {1: 9.0, 2: 9.0})  # written while no controller runs

    controller = seam.crash_and_restart()
    assert set(controller.runs) == {1}
    controller.cycle()
    assert seam.trial(1).state == TrialState.PRUNED and seam.trial(1).intermediate_values == {1: 9.0, 2: 9.0}
    assert (seam.control(1) or {}).get("action") == "prune"
    assert seam.backend.terminated == ["w1"]


@pytest.mark.parametrize("how", ["unconfirmed-create", "crash-before-create"])
def test_an_attempt_never_created_is_created_again_by_the_next_controller_not_counted_as_a_preemption(
    tmp_path: Path, how: str
) -> None:
    seam = Seam(tmp_path, trials=1, max_attempts=1)
    seam.controller.begin()
    if how == "unconfirmed-create":
        seam.backend.launch_faults.append((LaunchUnknownError("POST /v2/pods: 500, and no lookup answered"), False))
        seam.controller.cycle()  # the controller dies before a listing says whether the pod exists
    else:
        seam.backend.launch_faults.append((AuthError("POST /v2/pods: 401 Unauthorized", status=401), False))
        with pytest.raises(AuthError):
            seam.controller.cycle()  # the run ends after the journal named attempt 0, before any pod existed
    assert seam.backend.alive == {} and not seam.volume.exists(seam.layout.events(0, 0))

    seam.crash_and_restart().cycle()
    trial = seam.trial(0)
    assert trial.state == TrialState.RUNNING, trial.user_attrs.get(ATTR_ERROR)
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 0)]  # the same attempt, created this time
    assert AttemptRef(0, 0) in seam.backend.alive
    assert ATTR_PREEMPTIONS not in trial.user_attrs and trial.user_attrs[ATTR_ATTEMPTS] == 1
