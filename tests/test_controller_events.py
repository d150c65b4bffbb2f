"""What reaches the study from a poll's events: every report, the worker's verdict, one pruner question.

Issue 10, item 1: the controller asked the pruner after each report of a poll
and, at the first "prune", dropped the rest of the batch, a written ``done``
included. These tests drive the controller one poll at a time over a
scripted backend (tests/controller_harness.py).
"""

from __future__ import annotations

from pathlib import Path

from controller_harness import Seam
from optuna.trial import TrialState

MEDIAN = "{type: median, n_startup_trials: 1, n_warmup_steps: 0}"


def _trial(seam: Seam, number: int):
    assert seam.controller.study is not None
    return seam.controller.study.get_trials(deepcopy=False)[number]


def _complete_a_good_trial(seam: Seam) -> None:
    """Trial 0 reports a low curve and finishes, so the median pruner has a baseline."""
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {s: 0.1 for s in range(1, 6)})
    seam.write(0, {"type": "done", "value": 0.1})
    seam.backend.gone(0)
    seam.controller.cycle()
    assert _trial(seam, 0).state == TrialState.COMPLETE


def test_a_done_read_in_the_same_poll_as_prunable_reports_is_the_verdict(tmp_path: Path) -> None:
    seam = Seam(tmp_path, pruner=MEDIAN, trials=2)
    _complete_a_good_trial(seam)
    # Trial 1's worker ran to the end between two polls: every step worse than the median.
    seam.reports(1, {s: 9.0 for s in range(1, 6)})
    seam.write(1, {"type": "done", "value": 9.0})
    seam.backend.gone(1)
    seam.controller.cycle()

    trial = _trial(seam, 1)
    assert trial.state == TrialState.COMPLETE and trial.value == 9.0
    assert trial.intermediate_values == {s: 9.0 for s in range(1, 6)}


def test_every_report_of_a_batch_reaches_the_study_before_the_pruner_is_asked_once(tmp_path: Path) -> None:
    seam = Seam(tmp_path, pruner=MEDIAN, trials=2)
    _complete_a_good_trial(seam)
    seam.reports(1, {1: 9.0, 2: 9.0, 3: 9.0})  # three steps in one poll, the worker still alive
    seam.controller.cycle()

    trial = _trial(seam, 1)
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {1: 9.0, 2: 9.0, 3: 9.0}
    assert seam.backend.terminated == ["w1"]  # its worker stopped in the same poll
    control = seam.volume.read_json(seam.layout.control(1))
    assert control["action"] == "prune" and control["step"] == 3 and control["attempt"] == 0
    assert control["events_read"] == seam.volume.size(seam.layout.events(1, 0))


def test_a_trial_at_its_last_step_is_left_to_finish_not_pruned(tmp_path: Path) -> None:
    seam = Seam(tmp_path, pruner=MEDIAN, trials=2)
    _complete_a_good_trial(seam)
    seam.reports(1, {s: 9.0 for s in range(1, 6)})  # reached max_step; its `done` is on the way
    seam.controller.cycle()
    assert _trial(seam, 1).state == TrialState.RUNNING
    seam.write(1, {"type": "done", "value": 9.0})
    seam.backend.gone(1)
    seam.controller.cycle()
    assert _trial(seam, 1).state == TrialState.COMPLETE


def test_an_adopted_trial_whose_worker_finished_unwatched_keeps_its_result(tmp_path: Path) -> None:
    seam = Seam(tmp_path, pruner=MEDIAN, trials=2)
    _complete_a_good_trial(seam)
    seam.reports(1, {1: 0.05})  # better than the median: it goes on
    seam.controller.cycle()
    assert _trial(seam, 1).state == TrialState.RUNNING
    # The controller dies; the worker goes on alone and finishes.
    seam.reports(1, {s: 9.0 for s in range(2, 6)})
    seam.write(1, {"type": "done", "value": 9.0})
    seam.backend.gone(1)
    seam.crash_and_restart().cycle()

    trial = _trial(seam, 1)
    assert trial.state == TrialState.COMPLETE and trial.value == 9.0
    assert trial.intermediate_values == {1: 0.05} | {s: 9.0 for s in range(2, 6)}


def test_an_earlier_attempts_verdict_found_on_adoption_is_the_result(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {1: 0.5, 2: 0.4})
    seam.backend.gone(0)
    seam.controller.cycle()  # attempt 0 gone without a verdict: attempt 1 launched
    assert seam.backend.launched[-1].attempt == 1
    # Attempt 1 finishes while no controller is alive.
    seam.reports(0, {2: 0.4, 3: 0.3}, attempt=1)
    seam.write(0, {"type": "done", "value": 0.3}, attempt=1)
    seam.backend.gone(0, attempt=1)
    seam.crash_and_restart().cycle()

    trial = _trial(seam, 0)
    assert trial.state == TrialState.COMPLETE and trial.value == 0.3
    assert trial.intermediate_values == {1: 0.5, 2: 0.4, 3: 0.3}
