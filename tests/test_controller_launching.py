"""Launching: no capacity queues a trial and it is tried again later; attempts and trials are counted against the budget.

Issue 13, driven one poll at a time (tests/controller_harness.py).
"""

from __future__ import annotations

from pathlib import Path

from controller_harness import Seam
from optuna.trial import TrialState

from hpo.backends import AttemptRef
from hpo.errors import CapacityError
from hpo.trial_attrs import ATTR_ATTEMPTS, ATTR_ERROR, ATTR_PREEMPTIONS, ATTR_QUEUED


def _no_room() -> CapacityError:
    return CapacityError(
        "POST /v2/pods: no instances available for NVIDIA RTX A4000", method="POST", path="/v2/pods", status=500
    )


def _finish(seam: Seam, trial: int, value: float, attempt: int = 0) -> None:
    seam.write(trial, {"type": "report", "step": 1, "value": value}, {"type": "done", "value": value}, attempt=attempt)
    seam.backend.gone(trial, attempt)


# -- queueing --------------------------------------------------------------------------


def test_a_trial_without_capacity_is_queued_retried_later_and_launched_when_capacity_returns(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=2, concurrency=1)
    seam.backend.launch_faults += [(_no_room(), False), (_no_room(), False)]
    seam.controller.begin()
    seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0)] and seam.backend.alive == {}
    assert seam.trial(0).state == TrialState.RUNNING and seam.trial(0).user_attrs[ATTR_QUEUED] is True
    assert [m for m in seam.messages if "queued" in m] == [
        "trial 0 queued: POST /v2/pods: no instances available for NVIDIA RTX A4000"
    ]
    assert len(seam.study().trials) == 1  # the queued trial holds its slot: no second trial is asked

    seam.controller.cycle()  # no time has passed: no new try
    assert len(seam.backend.launched) == 1
    seam.clock.sleep(seam.config.poll_interval)
    seam.controller.cycle()  # the queue delay is over: tried again, still no room (and the delay doubles)
    assert len(seam.backend.launched) == 2
    seam.clock.sleep(seam.config.poll_interval)
    seam.controller.cycle()
    assert len(seam.backend.launched) == 2
    seam.clock.sleep(seam.config.poll_interval)
    seam.controller.cycle()  # capacity is back
    assert seam.backend.launched == [AttemptRef(0, 0)] * 3
    assert AttemptRef(0, 0) in seam.backend.alive
    trial = seam.trial(0)
    assert trial.user_attrs[ATTR_QUEUED] is False
    assert trial.user_attrs[ATTR_ATTEMPTS] == 1  # waiting for room used up no attempt
    assert len([m for m in seam.messages if "queued" in m]) == 1  # said once, not once per try

    _finish(seam, 0, 0.5)
    seam.controller.cycle()
    assert seam.states() == [TrialState.COMPLETE, TrialState.RUNNING]
    assert seam.backend.launched[-1] == AttemptRef(1, 0)


def test_a_resumed_attempt_without_capacity_waits_as_that_attempt(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1, max_attempts=2)
    seam.controller.begin()
    seam.controller.cycle()
    seam.backend.launch_faults.append((_no_room(), False))
    seam.backend.gone(0)
    seam.controller.cycle()  # preempted; attempt 1 finds no room
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 1)] and seam.backend.alive == {}
    seam.clock.sleep(seam.config.poll_interval)
    seam.controller.cycle()
    assert seam.backend.launched[-1] == AttemptRef(0, 1) and AttemptRef(0, 1) in seam.backend.alive
    trial = seam.trial(0)
    assert trial.state == TrialState.RUNNING
    assert (trial.user_attrs[ATTR_ATTEMPTS], trial.user_attrs[ATTR_PREEMPTIONS]) == (2, 1)


def test_a_queued_trial_is_launched_by_the_next_controller(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.backend.launch_faults.append((_no_room(), False))
    seam.controller.begin()
    seam.controller.cycle()
    assert seam.backend.alive == {}

    controller = seam.crash_and_restart()
    assert set(controller.runs) == {0}
    controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 0)]
    assert AttemptRef(0, 0) in seam.backend.alive
    trial = seam.trial(0)
    assert trial.user_attrs[ATTR_QUEUED] is False and trial.user_attrs[ATTR_ATTEMPTS] == 1
    assert ATTR_PREEMPTIONS not in trial.user_attrs  # never launched: no preemption


# -- attempt limits ----------------------------------------------------------------------


def test_a_trial_preempted_max_attempts_times_fails_saying_why(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=2, max_attempts=2)
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {1: 0.5})
    seam.backend.gone(0)
    seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 1)]
    assert seam.trial(0).state == TrialState.RUNNING
    seam.backend.gone(0, attempt=1)
    seam.controller.cycle()

    trial = seam.trial(0)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs[ATTR_ERROR] == (
        "attempt 1 ended without a result (preempted or killed); no attempts left (budget.max_attempts = 2)"
    )
    assert (trial.user_attrs[ATTR_PREEMPTIONS], trial.user_attrs[ATTR_ATTEMPTS]) == (2, 2)
    assert trial.intermediate_values == {1: 0.5}
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 1), AttemptRef(1, 0)]  # the slot goes on
    assert seam.controller.launch_stopped is None


def test_one_attempt_allowed_means_the_first_preemption_fails_the_trial(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1, max_attempts=1)
    seam.controller.begin()
    seam.controller.cycle()
    seam.backend.gone(0)
    seam.controller.cycle()
    assert seam.states() == [TrialState.FAIL] and seam.backend.launched == [AttemptRef(0, 0)]
    assert "budget.max_attempts = 1" in seam.trial(0).user_attrs[ATTR_ERROR]


def test_budget_trials_bounds_the_trials_asked_with_several_running_at_once(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=3, concurrency=2)
    seam.controller.begin()
    seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0)]
    assert set(seam.controller.runs) == {0, 1}
    _finish(seam, 0, 0.5)
    seam.controller.cycle()
    assert seam.backend.launched[-1] == AttemptRef(2, 0) and set(seam.controller.runs) == {1, 2}
    _finish(seam, 1, 0.4)
    seam.controller.cycle()  # a slot is free, but the budget's 3 trials are all asked
    assert set(seam.controller.runs) == {2} and len(seam.backend.launched) == 3
    _finish(seam, 2, 0.3)
    for _ in range(3):
        seam.controller.cycle()
    assert seam.states() == [TrialState.COMPLETE] * 3
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0), AttemptRef(2, 0)]
    assert seam.controller.runs == {}


def test_budget_trials_counts_trials_not_attempts_and_a_failure_uses_one_up(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=2, concurrency=4)
    seam.controller.begin()
    seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0)]  # concurrency above the budget: 2
    seam.backend.gone(0)  # preempted: its next attempt is no new trial
    seam.write(1, {"type": "error", "message": "ValueError: lr must be positive"})
    seam.backend.gone(1)
    seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0), AttemptRef(0, 1)]
    assert seam.states() == [TrialState.RUNNING, TrialState.FAIL]
    _finish(seam, 0, 0.5, attempt=1)
    seam.controller.cycle()
    assert seam.states() == [TrialState.COMPLETE, TrialState.FAIL]
    assert len(seam.backend.launched) == 3 and seam.controller.runs == {}
