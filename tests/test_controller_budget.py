"""budget.usd: a spend reaching it stops the study's workers, parks their trials RUNNING, and a later run resumes them.

Issue 13, driven one poll at a time (tests/controller_harness.py): the
scripted workers bill ``usd_per_hr`` from their launch on the manual clock,
which is also the provider's clock the controller meters by. At $36/h a
worker costs one cent a second.
"""

from __future__ import annotations

from pathlib import Path

from controller_harness import Seam
from optuna.trial import TrialState

from hpo.backends import AttemptRef, WorkerHandle
from hpo.trial_attrs import ATTR_ATTEMPTS, ATTR_BUDGET_STOPS, ATTR_ERROR, ATTR_PREEMPTIONS, ATTR_QUEUED

RATE = 36.0  # USD per hour: $0.01 a second


def _spend_until_stopped(seam: Seam, step: float = 10.0, polls: int = 30) -> int:
    """Poll every ``step`` seconds until the budget stops the study; the number of polls it took."""
    for poll in range(1, polls + 1):
        seam.clock.sleep(step)
        seam.controller.cycle()
        if seam.controller.launch_stopped:
            return poll
    raise AssertionError(f"no budget stop after {polls} polls: {seam.messages}")


def test_a_spent_budget_stops_the_workers_parks_the_trials_and_launches_nothing(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=4, concurrency=2, budget="usd: 1.0")
    seam.backend.usd_per_hr = RATE
    seam.controller.begin()
    seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0)]
    seam.reports(0, {1: 0.5})
    seam.reports(1, {1: 0.6, 2: 0.55})

    polls = _spend_until_stopped(seam)
    reason = seam.controller.launch_stopped
    assert reason is not None and reason.startswith("budget.usd $1 reached")
    # Two workers at a cent a second each: the guard stops before the budget is gone, within one poll of it.
    assert 0.5 <= 2 * 0.01 * 10 * polls <= 1.0
    assert seam.control(0) == {"action": "stop", "reason": reason}
    assert seam.control(1) == {"action": "stop", "reason": reason}
    assert sorted(seam.backend.terminated) == ["w0", "w1"] and seam.backend.alive == {}
    assert any("stopping 2 running trial(s)" in m for m in seam.messages), seam.messages

    seam.write(0, {"type": "stopped"})  # trial 0's agent acknowledges; trial 1's is killed before it can
    seam.controller.cycle()
    assert seam.controller.runs == {}  # both parked ...
    assert seam.states() == [TrialState.RUNNING, TrialState.RUNNING]  # ... and left RUNNING for a later run
    assert "trial 0 stopped at step 1; a later run resumes it" in seam.messages
    assert "trial 1 stopped at step 2; a later run resumes it" in seam.messages
    for _ in range(3):
        seam.clock.sleep(10)
        seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0)]  # trials 2 and 3 were never asked
    assert len(seam.study().trials) == 2


def test_a_later_run_with_a_bigger_budget_resumes_stopped_trials_without_using_up_their_attempts(
    tmp_path: Path,
) -> None:
    seam = Seam(tmp_path, trials=2, concurrency=2, max_attempts=2, budget="usd: 1.0")
    seam.backend.usd_per_hr = RATE
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {1: 0.5})
    seam.reports(1, {1: 0.6})
    _spend_until_stopped(seam)
    seam.controller.cycle()  # both parked
    seam.write(1, {"type": "done", "value": 0.6})  # trial 1's agent finished just before its pod went
    assert seam.states() == [TrialState.RUNNING, TrialState.RUNNING]

    seam.configure(budget="usd: 10.0")  # the user raises the budget and runs again
    controller = seam.crash_and_restart()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0), AttemptRef(0, 1)]  # resumed on adoption
    assert seam.trial(1).state == TrialState.COMPLETE and seam.trial(1).value == 0.6  # its result stands
    assert set(controller.runs) == {0} and controller.launch_stopped is None
    assert seam.control(0) is None  # the stop order is withdrawn: this run decides anew
    trial = seam.trial(0)
    assert trial.state == TrialState.RUNNING and trial.intermediate_values == {1: 0.5}
    assert trial.user_attrs[ATTR_BUDGET_STOPS] == 1 and trial.user_attrs[ATTR_ATTEMPTS] == 2
    assert ATTR_PREEMPTIONS not in trial.user_attrs
    assert "trial 0: resuming after a budget stop, as attempt 1" in seam.messages

    # With max_attempts = 2, attempt 1 is its first counted attempt: one preemption still leaves it one.
    seam.backend.gone(0, attempt=1)
    controller.cycle()
    assert seam.backend.launched[-1] == AttemptRef(0, 2)
    assert seam.trial(0).state == TrialState.RUNNING and seam.trial(0).user_attrs[ATTR_PREEMPTIONS] == 1
    seam.backend.gone(0, attempt=2)
    controller.cycle()
    trial = seam.trial(0)
    assert trial.state == TrialState.FAIL
    assert "no attempts left (budget.max_attempts = 2)" in trial.user_attrs[ATTR_ERROR]


def test_the_budget_reached_during_an_api_outage_orders_the_stop_and_terminates_when_the_api_answers(
    tmp_path: Path,
) -> None:
    seam = Seam(tmp_path, trials=1, budget="usd: 1.0")
    seam.backend.usd_per_hr = RATE
    seam.controller.begin()
    seam.controller.cycle()
    seam.backend.outage = 1000
    for _ in range(200):  # a cent a second, one poll a second, nobody answering
        seam.clock.sleep(1)
        seam.controller.cycle()
        if seam.controller.launch_stopped:
            break
    assert seam.controller.launch_stopped is not None
    assert (seam.control(0) or {}).get("action") == "stop"  # the order needs no API
    assert seam.backend.terminated == []  # the terminate does
    seam.backend.outage = 0
    seam.controller.cycle()
    assert seam.backend.terminated == ["w0"]
    seam.controller.cycle()
    assert seam.controller.runs == {} and seam.states() == [TrialState.RUNNING]


def test_a_launch_the_budget_cannot_pay_for_is_never_made_and_a_later_run_makes_it(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=2, budget="usd: 0.005")  # less than one poll of one worker
    seam.backend.usd_per_hr = RATE
    summary = seam.run()
    assert seam.backend.launched == []
    assert summary.stopped is not None and summary.stopped.startswith("budget.usd $0.005 reached")
    assert (summary.complete, summary.running, summary.spent_usd) == (0, 1, 0.0)
    assert seam.trial(0).user_attrs[ATTR_QUEUED] is True  # asked, waiting for a run that may pay for it
    assert any(m.startswith("stopped launching: budget.usd") and "1 trial(s) left to resume" in m for m in seam.messages)

    def finish(handle: WorkerHandle) -> None:
        seam.write(handle.ref.trial, {"type": "done", "value": 0.5}, attempt=handle.ref.attempt)
        seam.backend.gone(handle.ref.trial, handle.ref.attempt)

    seam.backend.on_launch = finish
    seam.configure(budget="usd: 5.0")
    seam.controller = seam.new_controller(cache="cache-2")
    summary = seam.run()
    assert (summary.complete, summary.running, summary.stopped) == (2, 0, None)
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0)]  # trial 0 as its first attempt
    assert seam.trial(0).user_attrs[ATTR_QUEUED] is False and seam.trial(0).user_attrs[ATTR_ATTEMPTS] == 1


def test_budget_gpu_hours_stops_a_run_like_budget_usd(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=3, concurrency=2, budget="gpu_hours: 0.01")  # 36 GPU-seconds
    seam.backend.usd_per_hr = RATE  # one GPU per worker
    summary = seam.run()
    assert summary.stopped is not None and summary.stopped.startswith("budget.gpu_hours 0.01 reached")
    assert 0.009 <= summary.gpu_hours <= 0.01
    assert summary.running == 2 and sorted(seam.backend.terminated) == ["w0", "w1"]


def test_a_whole_run_stops_within_its_budget_and_says_what_is_left(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=4, concurrency=2, budget="usd: 0.5")
    seam.backend.usd_per_hr = RATE
    seam.backend.on_launch = lambda handle: seam.reports(handle.ref.trial, {1: 0.5})  # they never finish
    summary = seam.run()
    assert summary.stopped is not None and summary.stopped.startswith("budget.usd $0.5 reached")
    assert summary.running == 2 and summary.complete == 0
    assert 0.45 <= summary.spent_usd <= 0.5  # stopped one poll before the budget would be passed
    assert sorted(seam.backend.terminated) == ["w0", "w1"] and seam.backend.alive == {}
    assert any("2 trial(s) left to resume" in m for m in seam.messages), seam.messages
    assert seam.controller.lease.current() is None  # released
