"""The budget guard: its arithmetic, and a RunPod study on the fake held to a tiny budget, then resumed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState
from studyfiles import (
    fake_runpod_for,
    first_reports,
    load_trials,
    make_workspace,
    study_config,
    study_volume,
)

from hpo.controller import Controller, build_controller
from hpo.cost import BudgetGuard, Spend
from hpo.fake_runpod import FakeRunPod
from hpo.layout import StudyLayout

API_KEY = "rpa_budget_test_key"


# ---------------------------------------------------------------------- the arithmetic


def test_the_guard_stops_when_the_spend_at_the_next_poll_reaches_the_budget() -> None:
    guard = BudgetGuard(usd=1.0)
    assert guard.limited and not BudgetGuard().limited
    assert guard.exhausted(Spend(0.90, 0.0, usd_per_hr=3.6), horizon=60.0) is None  # 0.96 at the next poll
    reason = guard.exhausted(Spend(0.95, 0.0, usd_per_hr=3.6), horizon=60.0)  # 1.01 at the next poll
    assert reason and "budget.usd $1 reached" in reason and "$0.9500 spent" in reason
    assert guard.exhausted(Spend(1.0, 0.0), horizon=0.0) is not None  # reached, nothing billing
    assert BudgetGuard().exhausted(Spend(1e9, 1e9, 1e9, 1000), horizon=1e9) is None


def test_a_launch_is_refused_when_its_rate_would_reach_the_budget_by_the_next_poll() -> None:
    guard = BudgetGuard(usd=1.0)
    spend = Spend(0.90, 0.0, usd_per_hr=1.8, gpus=1)  # 0.93 at the next poll of 60 s
    assert guard.refuses_launch(spend, 60.0, usd_per_hr=1.8, gpus=1) is None  # 0.96 with one more
    assert guard.refuses_launch(spend, 60.0, usd_per_hr=5.4, gpus=1) is not None  # 1.02


def test_gpu_hours_count_every_gpu_of_every_pod() -> None:
    guard = BudgetGuard(gpu_hours=1.0)
    assert guard.exhausted(Spend(0.0, 3000.0, gpus=8), horizon=60.0) is None  # 3480 GPU-s at the next poll
    reason = guard.exhausted(Spend(0.0, 3200.0, gpus=8), horizon=60.0)  # 3680
    assert reason and "budget.gpu_hours 1 reached" in reason
    assert guard.left(Spend(0.0, 1800.0)) == (None, 0.5)
    assert BudgetGuard(usd=2.0).left(Spend(2.5, 0.0)) == (0.0, None)  # never below zero


# ---------------------------------------------------------------------- on the fake


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tmp_path / "project"


@pytest.fixture
def fake(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod]:
    with fake_runpod_for(project, tmp_path, monkeypatch, API_KEY) as server:
        yield server


def _with_budget(studies: Path, budget: str) -> None:
    """Give the `pods` study of the test workspace a budget (``usd: ...``), and a poll every 2 fake seconds."""
    text = studies.read_text()
    head, pods = text.split("\n  pods:\n")
    pods = pods.replace("max_attempts: 3}", f"max_attempts: 3, {budget}}}").replace("poll_interval: 0.1", "poll_interval: 2.0")
    studies.write_text(f"{head}\n  pods:\n{pods}")


def _on_the_fakes_clock(fake: FakeRunPod) -> dict[str, Callable[..., Any]]:
    """The controller's clocks, all on the fake's time: its polls, its sleeps and the pods' bills agree."""
    return {
        "clock": fake.now,
        "sleep": lambda seconds: time.sleep(fake.clock.real_seconds(seconds)),
        "wall_clock": lambda: fake.clock.to_datetime(fake.now()).timestamp(),
    }


def _record_polls(controller: Controller, now: Callable[[], float]) -> list[float]:
    """The fake time at the start of each of the controller's poll cycles."""
    polls: list[float] = []
    cycle = controller.cycle

    def timed() -> None:
        polls.append(now())
        cycle()

    controller.cycle = timed  # type: ignore[method-assign]
    return polls


@pytest.mark.slow
def test_a_tiny_budget_stops_the_pods_within_one_poll_and_a_bigger_one_resumes_the_trials(
    fake: FakeRunPod, project: Path, tmp_path: Path
) -> None:
    studies = make_workspace(project, pace=0.15, max_step=8, trials=3, concurrency=2, spot="false")
    budget = 0.004  # two on-demand A5000s ($0.27/h each) spend it in about 27 fake seconds
    _with_budget(studies, f"usd: {budget}")
    config = study_config(studies, "pods")
    clocks = _on_the_fakes_clock(fake)
    controller = build_controller(config, cache_dir=tmp_path / "cache", **clocks)
    polls = _record_polls(controller, fake.now)
    summary = controller.run()

    assert summary.stopped and "budget.usd $0.004 reached" in summary.stopped
    pods = fake.pods(include_terminated=True)
    assert len(pods) == 2 and all(p.status == "TERMINATED" for p in pods)  # terminated, not left to bill
    spent = sum(p.billed_usd for p in pods)
    one_poll = sum(p.cost_per_hr for p in pods) * max(b - a for a, b in pairwise(polls)) / 3600.0
    assert spent <= budget + one_poll, (spent, budget, one_poll)
    assert summary.spent_usd == pytest.approx(spent, abs=1e-6)  # reconciled with the bill (rounded to 1e-6)
    layout, volume = StudyLayout(config.name), study_volume(config)
    trials = load_trials(config, tmp_path / "r1")
    assert [t.state for t in trials] == [TrialState.RUNNING] * 2  # resumable: neither failed nor pruned
    for trial in trials:
        assert volume.read_json(layout.control(trial.number))["action"] == "stop"
        assert trial.user_attrs["attempts"] == 1 and trial.user_attrs["cost_usd"] > 0

    # A budget already spent: nothing is launched at all.
    _with_budget(make_workspace(project, pace=0.15, max_step=8, trials=3, concurrency=2, spot="false"), f"usd: {spent / 2}")
    again = build_controller(study_config(studies, "pods"), cache_dir=tmp_path / "cache", **clocks).run()
    assert again.stopped and "budget.usd" in again.stopped and len(fake.pods(include_terminated=True)) == 2

    # A bigger budget: the stopped trials resume from their checkpoints, and the study completes.
    _with_budget(make_workspace(project, pace=0.15, max_step=8, trials=3, concurrency=2, spot="false"), "usd: 1.0")
    config = study_config(studies, "pods")
    summary = build_controller(config, cache_dir=tmp_path / "cache", **clocks).run()
    assert summary.stopped is None and summary.complete == 3
    trials = load_trials(config, tmp_path / "r2")
    for trial in trials[:2]:
        assert trial.user_attrs["attempts"] == 2 and trial.user_attrs["budget_stops"] == 1
        assert trial.user_attrs.get("preemptions", 0) == 0  # a budget stop is no preemption
        assert trial.intermediate_values == first_reports(config, trial.number)
        assert sorted(trial.intermediate_values) == list(range(1, 9))
    assert not volume.exists(layout.control(0)) and not volume.exists(layout.control(1))
