"""Whole studies with real trial processes: pruning, failures, preemption, a crashed controller.

These run the real agent as subprocesses on a directory volume in tmp_path;
nothing is patched. They take seconds each, so they are marked ``slow``, all
but one: the failing objective's study stays in the fast suite, its local
end-to-end run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from optuna.trial import TrialState
from studyfiles import (
    count_events,
    first_reports,
    load_trials,
    make_workspace,
    study_config,
    study_processes,
    study_volume,
    wait_for,
)

from hpo.controller import build_controller
from hpo.events import drain
from hpo.layout import StudyLayout


def _assert_reports_exactly_once(config, trials) -> None:  # type: ignore[no-untyped-def]
    """Every value a worker reported is in the study once, at its step, and nothing else is.

    A pruned worker may report a step or two more before its SIGTERM lands; those
    come after the verdict and are deliberately not added to a finished trial.
    """
    for trial in trials:
        reported = first_reports(config, trial.number)
        if trial.state == TrialState.PRUNED:
            verdict = max(trial.intermediate_values)
            reported = {step: value for step, value in reported.items() if step <= verdict}
        assert trial.intermediate_values == reported, f"trial {trial.number}"


@pytest.mark.slow
def test_demo_study_completes_and_every_report_lands_once(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path / "project")
    config = study_config(studies, "mini")
    summary = build_controller(config, cache_dir=tmp_path / "cache").run()

    trials = load_trials(config, tmp_path / "cache-reader")
    states = [t.state for t in trials]
    assert len(trials) == config.budget.trials
    assert states.count(TrialState.COMPLETE) >= 1
    assert TrialState.RUNNING not in states
    assert summary.complete == states.count(TrialState.COMPLETE)
    assert summary.best_value == min(t.value for t in trials if t.state == TrialState.COMPLETE)
    _assert_reports_exactly_once(config, trials)
    # How many are pruned depends on how many steps a worker runs between two polls (a whole
    # trial's, on a loaded machine, when its `done` is the verdict); a pruned one stopped early.
    assert all(max(t.intermediate_values) < config.fidelity.max_step for t in trials if t.state == TrialState.PRUNED)
    assert study_processes(config) == []


@pytest.mark.slow
def test_a_trial_worse_than_the_median_is_pruned_and_its_worker_stopped(tmp_path: Path) -> None:
    """Pruning end to end, whatever the machine's speed: each trial waits at step 2 for a gate the test opens."""
    gates = tmp_path / "gates"
    gates.mkdir()
    studies = make_workspace(
        tmp_path / "project", pace=0.01, max_step=4, trials=4, concurrency=1,
        gate=gates / "{trial}", pruner="{type: median, n_startup_trials: 1, n_warmup_steps: 0}",
    )
    config = study_config(studies, "steady")
    controller = build_controller(config, cache_dir=tmp_path / "cache")
    runner = threading.Thread(target=controller.run)
    runner.start()
    try:
        (gates / "0").touch()  # trial 0 runs to the end: the median to beat
        for trial in range(1, 4):
            # Trial n reported step 1 and waits at its gate: the controller decides on step 1 alone.
            wait_for(lambda trial=trial: _reported(controller, trial), 120, f"the controller to read trial {trial}'s first report")
            (gates / str(trial)).touch()
    finally:
        for trial in range(4):
            (gates / str(trial)).touch()
        runner.join(timeout=180)
    assert not runner.is_alive()

    trials = load_trials(config, tmp_path / "cache-reader")
    for trial in trials[1:]:
        # The median pruner: worse at step 1 than the median of the trials completed before it.
        before = [t.intermediate_values[1] for t in trials[: trial.number] if t.state == TrialState.COMPLETE]
        worse = trial.intermediate_values[1] > float(np.median(before))
        assert trial.state == (TrialState.PRUNED if worse else TrialState.COMPLETE), (trial.number, trial.params)
        if worse:
            assert trial.intermediate_values == {1: trial.intermediate_values[1]}  # stopped at its gate
    assert any(t.state == TrialState.PRUNED for t in trials), [t.params["x"] for t in trials]
    assert study_processes(config) == []


def _reported(controller: Any, number: int) -> bool:
    trials = controller.study.get_trials(deepcopy=False) if controller.study is not None else []
    return number < len(trials) and 1 in trials[number].intermediate_values


def test_a_failing_objective_fails_its_trial_and_the_study_goes_on(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path / "project", fail_trial=1, trials=4, concurrency=2)
    config = study_config(studies, "steady")
    build_controller(config, cache_dir=tmp_path / "cache").run()

    trials = load_trials(config, tmp_path / "cache-reader")
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 3
    failed = trials[1]
    assert failed.state == TrialState.FAIL
    assert "RuntimeError: boom at step 2" in failed.user_attrs["error"]
    assert failed.user_attrs["attempts"] == 1  # an objective's own error is not retried
    _assert_reports_exactly_once(config, trials)
    assert study_processes(config) == []


@pytest.mark.slow
def test_sigterm_to_an_attempt_resumes_the_trial_from_its_checkpoint(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path / "project", pace=0.15, max_step=10, trials=1, concurrency=1)
    config = study_config(studies, "steady")
    volume = study_volume(config)
    layout = StudyLayout(config.name)
    controller = build_controller(config, cache_dir=tmp_path / "cache")
    thread = threading.Thread(target=controller.run)
    thread.start()
    try:
        events = layout.events(0, 0)
        wait_for(lambda: count_events(volume, events, "checkpoint") >= 3, 30, "3 checkpoints")
        pid = volume.read_json(layout.launch(0, 0))["pid"]
        os.kill(pid, signal.SIGTERM)
    finally:
        thread.join(timeout=60)
    assert not thread.is_alive()

    trial = load_trials(config, tmp_path / "cache-reader")[0]
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["attempts"] == 2 and trial.user_attrs["preemptions"] == 1
    first = drain(volume, layout.events(0, 0))
    second = drain(volume, layout.events(0, 1))
    assert first[-1].type == "preempted"
    checkpointed = max(e.step for e in first if e.type == "checkpoint")
    assert second[0].type == "start" and second[0].resume_step == checkpointed >= 3
    # The resumed run continues exactly: the same curve as an uninterrupted run, each step once.
    x = trial.params["x"]
    assert trial.intermediate_values == {step: x + 1.0 / step for step in range(1, 11)}
    assert trial.user_attrs["steps_run_last_attempt"] == 10
    assert study_processes(config) == []


def _hpo(studies: Path, cache: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HPO_CACHE_DIR": str(cache)}
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", *args, "--studies", str(studies)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.slow
def test_a_killed_controller_is_resumed_with_nothing_lost_or_counted_twice(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path / "project", pace=0.1, max_step=12, trials=5, concurrency=2)
    config = study_config(studies, "steady")
    volume = study_volume(config)
    layout = StudyLayout(config.name)
    cache = tmp_path / "cache"

    first = _hpo(studies, cache, "run", "--study", "steady")
    wait_for(
        lambda: count_events(volume, layout.events(1, 0), "report") >= 3,
        60,
        "trial 1 to report 3 steps",
    )
    first.send_signal(signal.SIGKILL)
    first.wait()
    orphans = study_processes(config)
    assert orphans, "the trial processes outlive their controller, to be adopted"

    second = _hpo(studies, cache, "run", "--study", "steady")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "adopted" in err

    trials = load_trials(config, tmp_path / "cache-reader")
    assert len(trials) == 5
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    # Adopted, not relaunched: every trial ran in a single attempt.
    assert all(t.user_attrs["attempts"] == 1 for t in trials)
    for trial in trials:
        x = trial.params["x"]
        assert trial.intermediate_values == {step: x + 1.0 / step for step in range(1, 13)}
    _assert_reports_exactly_once(config, trials)
    assert study_processes(config) == []


@pytest.mark.slow
def test_a_second_live_controller_is_refused_naming_the_holder(tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # the first controller's trial waits for it: held however slow the machine
    studies = make_workspace(tmp_path / "project", pace=0.05, max_step=4, trials=1, concurrency=1, gate=gate)
    config = study_config(studies, "steady")
    volume = study_volume(config)
    first = _hpo(studies, tmp_path / "cache", "run", "--study", "steady")
    try:
        wait_for(lambda: volume.exists("hpo/steady/trials/0/spec.json"), 120, "the first controller to start")
        second = _hpo(studies, tmp_path / "cache2", "run", "--study", "steady")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 3
        assert "held by another controller" in err and f"pid {first.pid}" in err
        assert "Traceback" not in err
    finally:
        gate.touch()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert study_processes(config) == []


@pytest.mark.slow
def test_garbage_and_torn_lines_in_an_event_file_never_stop_the_controller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    studies = make_workspace(tmp_path / "project", garbage=True, trials=2, concurrency=2, max_step=4, pace=0.05)
    config = study_config(studies, "steady")
    with caplog.at_level("WARNING", logger="hpo.events"):
        build_controller(config, cache_dir=tmp_path / "cache").run()

    trials = load_trials(config, tmp_path / "cache-reader")
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    x = trials[0].params["x"]
    assert trials[0].intermediate_values == {step: x + 1.0 / step for step in range(1, 5)}
    warnings = [r.getMessage() for r in caplog.records]
    # start, report 1, checkpoint 1, then the garbage line
    assert any("hpo/steady/trials/0/attempts/0/events.jsonl: skipped 1 line" in m and "(line 4)" in m for m in warnings), warnings
    assert len(warnings) == 1  # the torn line was never mistaken for garbage


@pytest.mark.slow
def test_a_study_on_sqlite_storage_runs_and_resumes(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path / "project", trials=3, concurrency=2, max_step=3, storage="sqlite:///optuna.db")
    config = study_config(studies, "steady")
    build_controller(config, cache_dir=tmp_path / "cache").run()
    assert (tmp_path / "project" / "optuna.db").is_file()
    assert not study_volume(config).list("hpo/steady/journal/")

    bigger = make_workspace(tmp_path / "project", trials=5, concurrency=2, max_step=3, storage="sqlite:///optuna.db")
    build_controller(study_config(bigger, "steady"), cache_dir=tmp_path / "cache").run()
    trials = load_trials(study_config(bigger, "steady"), tmp_path / "unused")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    _assert_reports_exactly_once(config, trials)


@pytest.mark.slow
def test_kill_int_stops_a_run_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A background job (`hpo run ... &` in a script) starts with SIGINT ignored; `kill -INT` must still stop it."""
    gate = tmp_path / "gate"
    studies = make_workspace(tmp_path / "project", pace=0.05, max_step=4, trials=1, concurrency=1, gate=gate)
    config = study_config(studies, "steady")
    volume = study_volume(config)
    env = {**os.environ, "HPO_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.Popen(
        [sys.executable, "-m", "hpo", "run", "--study", "steady", "--studies", str(studies)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        wait_for(lambda: volume.exists("hpo/steady/trials/0/attempts/0/events.jsonl"), 120, "the trial to start")
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=120)
        assert run.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
    finally:
        if run.poll() is None:
            run.kill()
        gate.touch()
    rerun = subprocess.run(
        [sys.executable, "-m", "hpo", "run", "--study", "steady", "--studies", str(studies), "--quiet"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert study_processes(config) == []
