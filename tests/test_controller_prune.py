"""The pruner's word: a bad trial is told, ordered to stop and terminated in one poll, and stays pruned.

Issue 13, driven one poll at a time (tests/controller_harness.py). The
pruner is Optuna's median pruner (the config has no threshold pruner):
trial 0 finishes with a low curve first, so the median is 0.1 at every step.
"""

from __future__ import annotations

from pathlib import Path

from controller_harness import Seam
from optuna.trial import TrialState

from hpo.backends import AttemptRef
from hpo.trial_attrs import ATTR_PRUNE_ORDER

MEDIAN = "{type: median, n_startup_trials: 1, n_warmup_steps: 0}"


def _complete_a_good_trial(seam: Seam) -> None:
    """Trial 0 reports 0.1 at every step and finishes; the next trial is launched in the same poll."""
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {s: 0.1 for s in range(1, seam.config.fidelity.max_step + 1)})
    seam.write(0, {"type": "done", "value": 0.1})
    seam.backend.gone(0)
    seam.controller.cycle()
    assert seam.trial(0).state == TrialState.COMPLETE


def test_a_bad_trial_is_pruned_ordered_and_terminated_in_one_poll_and_a_late_done_does_not_change_it(
    tmp_path: Path,
) -> None:
    seam = Seam(tmp_path, pruner=MEDIAN, trials=3)
    _complete_a_good_trial(seam)
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0)]
    seam.reports(1, {1: 9.0, 2: 9.0})
    seam.controller.cycle()

    trial = seam.trial(1)
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {1: 9.0, 2: 9.0}
    assert seam.control(1) == {
        "action": "prune", "step": 2, "attempt": 0, "events_read": seam.volume.size(seam.layout.events(1, 0)),
    }
    # The journal says what the decision saw with the verdict (control.json comes after the tell).
    assert trial.user_attrs[ATTR_PRUNE_ORDER] == seam.control(1)
    assert seam.backend.terminated == ["w1"] and AttemptRef(1, 0) not in seam.backend.alive
    assert 1 not in seam.controller.runs
    assert seam.backend.launched[-1] == AttemptRef(2, 0)  # its slot went to the next trial in the same poll

    # The worker had gone on before the order reached it: its last words come late.
    seam.write(1, {"type": "report", "step": 3, "value": 0.01}, {"type": "done", "value": 0.01, "cpu_seconds": 2.5})
    seam.controller.cycle()
    trial = seam.trial(1)
    assert trial.state == TrialState.PRUNED
    assert trial.value == 9.0  # Optuna's value of a pruned trial: its last report when pruned, not the late 0.01
    assert trial.intermediate_values == {1: 9.0, 2: 9.0}

    seam.crash_and_restart().cycle()  # a later controller finds nothing to do for it
    assert seam.trial(1).state == TrialState.PRUNED
    assert set(seam.controller.runs) == {2}
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0), AttemptRef(2, 0)]


def test_a_good_trial_is_not_pruned_and_finishes(tmp_path: Path) -> None:
    seam = Seam(tmp_path, pruner=MEDIAN, trials=2)
    _complete_a_good_trial(seam)
    for step in range(1, 6):
        seam.reports(1, {step: 0.05})
        seam.controller.cycle()
        assert seam.trial(1).state == TrialState.RUNNING
    seam.write(1, {"type": "done", "value": 0.05})
    seam.backend.gone(1)
    seam.controller.cycle()
    assert seam.states() == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert seam.backend.terminated == [] and seam.control(1) is None


def test_the_pruner_waits_for_its_warmup_steps(tmp_path: Path) -> None:
    seam = Seam(tmp_path, pruner="{type: median, n_startup_trials: 1, n_warmup_steps: 3}", trials=2)
    _complete_a_good_trial(seam)
    for step in (1, 2):
        seam.reports(1, {step: 9.0})
        seam.controller.cycle()
        assert seam.trial(1).state == TrialState.RUNNING and seam.control(1) is None
    seam.reports(1, {3: 9.0})
    seam.controller.cycle()
    assert seam.trial(1).state == TrialState.PRUNED
    assert (seam.control(1) or {}).get("step") == 3
    assert seam.backend.terminated == ["w1"]


def test_a_prune_of_a_resumed_attempt_names_that_attempt_and_terminates_its_worker(tmp_path: Path) -> None:
    seam = Seam(tmp_path, pruner="{type: median, n_startup_trials: 1, n_warmup_steps: 2}", trials=2)
    _complete_a_good_trial(seam)
    seam.reports(1, {1: 0.2})  # worse than the median, but within the warmup: it goes on
    seam.controller.cycle()
    assert seam.trial(1).state == TrialState.RUNNING
    seam.backend.gone(1)
    seam.controller.cycle()  # preempted: attempt 1 (worker w2) resumes it
    assert seam.backend.launched[-1] == AttemptRef(1, 1)
    seam.reports(1, {2: 9.0, 3: 9.0}, attempt=1)
    seam.controller.cycle()

    assert seam.trial(1).state == TrialState.PRUNED
    assert seam.trial(1).intermediate_values == {1: 0.2, 2: 9.0, 3: 9.0}
    assert seam.control(1) == {
        "action": "prune", "step": 3, "attempt": 1, "events_read": seam.volume.size(seam.layout.events(1, 1)),
    }
    assert seam.backend.terminated == ["w2"]


def test_a_prune_decided_during_an_api_outage_still_orders_the_worker_to_stop(tmp_path: Path) -> None:
    seam = Seam(tmp_path, pruner=MEDIAN, trials=2)
    _complete_a_good_trial(seam)
    seam.backend.outage = 5
    seam.reports(1, {1: 9.0})
    seam.controller.cycle()  # no listing: the reports are still read and judged
    assert seam.trial(1).state == TrialState.PRUNED
    assert (seam.control(1) or {}).get("action") == "prune"  # the worker reads its order itself
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(1, 0)]  # no launch decided blind
