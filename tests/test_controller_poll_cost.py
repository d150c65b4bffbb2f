"""A poll costs what changed, not what happened before (issue 16): the journal and the tally.

A report costs one journal log (its intermediate value): the last step is
read from the intermediate values, not written as a user attribute after each
report, and studies that hold that attribute still read the same. The
progress tally counts finished trials as they are told, and once at a run's
first look for the history, never by rescanning every trial each poll; these
tests check it against a full count of the study.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from controller_harness import Seam
from optuna.trial import TrialState

from hpo.status import study_rows
from hpo.trial_attrs import ATTR_LAST_STEP

MEDIAN = "{type: median, n_startup_trials: 1, n_warmup_steps: 0}"


def _logs(seam: Seam) -> int:
    journal = seam.controller.storage.journal
    assert journal is not None
    return journal.log_count


def test_a_report_costs_one_journal_log_and_no_last_step_attribute(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=3, concurrency=3)
    seam.controller.begin()
    seam.controller.cycle()  # launches three trials
    before = _logs(seam)
    for trial in range(3):
        seam.reports(trial, {1: 0.5, 2: 0.4, 3: 0.3})
    seam.controller.cycle()
    assert _logs(seam) - before == 9
    trial = seam.trial(0)
    assert ATTR_LAST_STEP not in trial.user_attrs
    assert seam.controller.runs[0].last_step == 3


def test_status_reads_the_last_step_from_the_reports_in_new_and_old_studies(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=2, concurrency=2, volume="directory")
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {1: 0.5, 2: 0.4})
    seam.reports(1, {1: 0.5, 2: 0.4, 3: 0.3})
    seam.controller.cycle()
    # A study written before: its controller kept `last_step` as an attribute (here, stale).
    seam.controller.storage.optuna.set_trial_user_attr(seam.controller.runs[1].trial_id, ATTR_LAST_STEP, 1)
    seam.controller.storage.flush()
    rows = study_rows(seam.config, seam.volume, cache_dir=tmp_path / "reader-cache")
    assert rows is not None
    assert [(row.last_step, row.last_value) for row in rows] == [(2, 0.4), (3, 0.3)]


def _full_count(seam: Seam) -> tuple[int, int, int, float | None, int | None]:
    """What the tally should say, counted from every trial of the study."""
    trials = seam.study().trials
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = min(done, key=lambda t: t.value) if done else None  # type: ignore[arg-type, return-value]
    return (
        sum(t.state == TrialState.COMPLETE for t in trials),
        sum(t.state == TrialState.PRUNED for t in trials),
        sum(t.state == TrialState.FAIL for t in trials),
        best.value if best else None,
        best.number if best else None,
    )


def _tally(seam: Seam) -> tuple[int, int, int, float | None, int | None]:
    t = seam.controller.tally
    return (t.complete, t.pruned, t.failed, t.best_value, t.best_trial)


def test_the_tally_counts_trials_as_they_finish_and_a_new_controller_counts_the_history_once(tmp_path: Path) -> None:
    seam = Seam(tmp_path, pruner=MEDIAN, trials=8, concurrency=2, max_attempts=1)
    seam.controller.begin()
    seam.controller.cycle()
    verdicts = [
        {"type": "done", "value": 0.5},  # trial 0
        {"type": "done", "value": 0.2},  # trial 1: the best
        {"type": "error", "message": "boom"},  # trial 2
        {"type": "pruned"},  # trial 3
        {"type": "done", "value": 0.2},  # trial 4: as good as trial 1, which stays the best
    ]
    for number, verdict in enumerate(verdicts):
        seam.reports(number, {1: 0.3})
        seam.write(number, verdict)
        seam.backend.gone(number)
        seam.controller.cycle()
        assert _tally(seam) == _full_count(seam), f"after trial {number}"
    assert _tally(seam)[:3] == (3, 1, 1) and _tally(seam)[4] == 1

    # A trial told just before the controller died is counted once by the next one.
    running = sorted(seam.controller.runs)
    seam.reports(running[0], {1: 0.1})
    seam.write(running[0], {"type": "done", "value": 0.1})
    seam.crash_and_restart()
    seam.controller.cycle()
    assert _tally(seam) == _full_count(seam)
    assert seam.controller.tally.best_value == 0.1


def test_the_best_of_a_maximized_study_is_the_highest_value(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=3, concurrency=1)
    seam.config = seam.config.model_copy(update={"direction": "maximize"})
    seam.controller = seam.new_controller()
    seam.controller.begin()
    assert seam.controller.study is not None
    assert seam.controller.study.direction == optuna.study.StudyDirection.MAXIMIZE
    for number, value in enumerate([0.3, 0.9, 0.5]):
        seam.controller.cycle()
        seam.write(number, {"type": "done", "value": value})
        seam.backend.gone(number)
    seam.controller.cycle()
    assert _tally(seam)[3:] == (0.9, 1)
