"""``hpo report``: the Pareto front on hand-made points, the report's files, clear messages, and the demo."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image
from studyfiles import REPO, hpo_in_process, make_workspace, study_config, study_volume

from hpo.controller import build_controller
from hpo.cost import PRICES_ATTR, WorkerOverhead, fallback_book, save_overhead
from hpo.journal import open_storage
from hpo.report import (
    build_report,
    dominated_by,
    pareto_front,
    pruning_savings,
    report_json,
    summary_lines,
    write_report,
)

# ---------------------------------------------------------------------- the front


def test_the_front_excludes_dominated_points_and_keeps_ties() -> None:
    points = pd.DataFrame(
        [  # cost, loss
            (0.5, 10.0),  # 0: cheapest of all: on the front
            (1.0, 5.0),  # 1: on the front
            (1.0, 5.0),  # 2: the same point again: neither beats the other, both on the front
            (1.0, 6.0),  # 3: same cost as 1, worse loss: dominated
            (2.0, 3.0),  # 4: on the front
            (3.0, 3.0),  # 5: same loss as 4, dearer: dominated
            (2.5, 4.0),  # 6: dearer and worse than 4: dominated
            (4.0, 1.0),  # 7: dearest, best: on the front
            (np.nan, 0.1),  # 8: no cost: takes no part
            (0.1, np.inf),  # 9: no loss: takes no part
        ],
        columns=["cost", "loss"],
    )
    front = pareto_front(points["cost"], points["loss"])
    assert list(np.flatnonzero(front)) == [0, 1, 2, 4, 7]
    assert dominated_by(points["cost"], points["loss"], 3) == [1, 2]
    assert dominated_by(points["cost"], points["loss"], 5) == [4]
    assert dominated_by(points["cost"], points["loss"], 2) == []


def test_the_front_agrees_with_the_definition_on_random_points() -> None:
    rng = random.Random(7)
    for _ in range(50):
        n = rng.randint(1, 30)
        # Few distinct values, so ties on either axis and identical points are common.
        cost = [float(rng.randint(0, 6)) for _ in range(n)]
        loss = [float(rng.randint(0, 6)) for _ in range(n)]
        expected = [not dominated_by(cost, loss, i) for i in range(n)]
        assert list(pareto_front(cost, loss)) == expected


def test_the_front_of_nothing_is_empty() -> None:
    assert pareto_front([], []).tolist() == []
    with pytest.raises(ValueError):
        pareto_front([1.0], [1.0, 2.0])


# ---------------------------------------------------------------------- the report's files


def _trial(number: int, state: TrialState, curve: list[float], cost: float, *, value: float | None = None) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else (curve[-1] if state == TrialState.PRUNED else None),
        params={"lr": 0.01 * (number + 1)},
        distributions={"lr": FloatDistribution(1e-3, 1.0, log=True)},
        intermediate_values={step + 1: v for step, v in enumerate(curve)},
        user_attrs={"cost_usd": cost, "gpu_seconds": cost / 0.27 * 3600, "gpu_type": "NVIDIA RTX A5000", "attempts": 1},
    )


def _hand_made_study() -> optuna.Study:
    study = optuna.create_study(study_name="steady", direction="minimize")
    trials = [
        _trial(0, TrialState.COMPLETE, [0.9, 0.5, 0.4, 0.3], 0.40, value=0.3),
        _trial(1, TrialState.PRUNED, [1.5, 1.4], 0.10),  # cheap and bad: on the front
        _trial(2, TrialState.COMPLETE, [0.8, 0.4, 0.3, 0.2], 0.80, value=0.2),  # dear and best: on the front
        _trial(3, TrialState.COMPLETE, [0.9, 0.6, 0.5, 0.45], 0.90, value=0.45),  # dominated by 0 and 2
        _trial(4, TrialState.FAIL, [1.0], 0.05),  # failed: no loss, but paid for
    ]
    for trial in trials:
        # create_trial leaves the dates empty; the report orders trials by when they finished.
        trial.datetime_start = datetime(2026, 2, 1, 12, 0) + timedelta(minutes=trial.number)
        trial.datetime_complete = trial.datetime_start + timedelta(minutes=30)
        study.add_trial(trial)
    return study


def test_the_report_files_open_and_hold_the_data(tmp_path: Path) -> None:
    config = study_config(make_workspace(tmp_path / "ws", max_step=4), "steady")
    study = _hand_made_study()
    report = build_report(config, study, study._storage, now=0.0)
    assert report.message is None
    assert list(report.front["trial"]) == [1, 0, 2]  # cheapest first
    assert report.axes.cost == "cost_usd"
    paths = write_report(report, tmp_path / "out")

    frame = pd.read_csv(paths["csv"])
    assert list(frame["trial"]) == [0, 1, 2, 3, 4]
    assert list(frame["state"]) == ["complete", "pruned", "complete", "complete", "fail"]
    assert list(frame["on_front"]) == [True, True, True, False, False]
    assert frame.loc[1, "best_value"] == 1.4 and frame.loc[1, "last_step"] == 2
    assert frame.loc[2, "cost_usd"] == pytest.approx(0.80) and frame.loc[0, "param_lr"] == pytest.approx(0.01)
    assert {"gpu_seconds", "gpu_hours", "attempts", "preemptions", "cost_source"} <= set(frame.columns)

    with Image.open(paths["png"]) as image:
        image.load()
        assert image.format == "PNG" and image.width > 800 and image.height > 400

    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "Pareto front" in page
    assert "plotly" in page and "<script src=" not in page  # plotly.js inline: the page works offline
    assert "0.45" in page and "NVIDIA RTX A5000" in page  # the table
    assert '"x":[0.1,0.4,0.8]' in page.replace(" ", "")  # the front's costs, cheapest first

    # Pruning saved trial 1's two steps not run, at its own cost per step.
    assert report.savings.pruned_trials == 1 and report.savings.steps_saved == 2
    assert report.savings.usd_saved == pytest.approx(0.10 / 2 * 2)
    assert report.savings.spent_usd == pytest.approx(0.40 + 0.10 + 0.80 + 0.90 + 0.05)


def test_the_report_says_when_the_budget_guard_priced_launches_from_the_shipped_table(tmp_path: Path) -> None:
    config = study_config(make_workspace(tmp_path / "ws", max_step=4), "steady")
    study = _hand_made_study()
    book = fallback_book("cannot read the GPU catalog: RunPod unreachable; using the shipped table of 2026-02")
    study._storage.set_study_system_attr(study._study_id, PRICES_ATTR, book.to_json())
    report = build_report(config, study, study._storage, now=0.0)
    [note] = report.notes
    assert "price table shipped with runpod-hpo as of 2026-02" in note and "RunPod unreachable" in note
    paths = write_report(report, tmp_path / "out")
    assert "shipped with runpod-hpo" in paths["html"].read_text()


def test_warm_workers_overhead_counts_in_the_spend_on_no_trial(tmp_path: Path) -> None:
    config = study_config(make_workspace(tmp_path / "ws", max_step=4), "steady")
    study = _hand_made_study()
    storage = study._storage
    save_overhead(storage, study._study_id, WorkerOverhead("pod-a", 0, 0.25, 600.0, billed=True))
    save_overhead(storage, study._study_id, WorkerOverhead("pod-b", 1, 0.05, 120.0, billed=False))
    storage.set_study_system_attr(study._study_id, "hpo:overhead:pod-c", {"usd": "lots"})  # a bad record: skipped
    report = build_report(config, study, storage, now=0.0)
    assert report.overhead.usd == pytest.approx(0.30) and report.overhead.workers == 2
    assert report.savings.spent_usd == pytest.approx(0.40 + 0.10 + 0.80 + 0.90 + 0.05 + 0.30)
    assert list(report.front["trial"]) == [1, 0, 2]  # no trial's cost moved: the overhead is the study's
    [spent] = [line for line in summary_lines(report) if line.startswith("spent:")]
    assert "warm workers' overhead (provisioning, image pull, idle) $0.3000, 720 worker-seconds over 2" in spent
    assert report_json(report, {})["overhead"] == {"usd": pytest.approx(0.30), "seconds": 720.0, "workers": 2}


def test_savings_skip_trials_pruned_with_nothing_run() -> None:
    frame = pd.DataFrame(
        {"state": ["pruned", "pruned", "complete"], "last_step": [0, 5, 10], "cost_usd": [0.1, 0.5, 1.0],
         "gpu_seconds": [10.0, 50.0, 100.0], "cpu_seconds": [np.nan, np.nan, np.nan]}
    )
    saved = pruning_savings(frame, max_step=10)
    assert saved.pruned_trials == 1 and saved.steps_saved == 5
    assert saved.usd_saved == pytest.approx(0.5) and saved.gpu_hours_saved == pytest.approx(50.0 / 3600)


# ---------------------------------------------------------------------- the command


def test_a_study_not_run_or_without_trials_is_a_clear_message(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path / "ws")
    env = {"HPO_CACHE_DIR": str(tmp_path / "cache")}
    result = hpo_in_process("report", "--study", "steady", "--studies", str(studies), env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "has not been run yet" in result.stderr and len(result.stderr.strip().splitlines()) == 1

    config = study_config(studies, "steady")
    storage = open_storage(study_volume(config), config.name, writer=True, cache_dir=tmp_path / "writer")
    optuna.create_study(study_name=config.name, storage=storage.optuna)
    storage.flush()
    result = hpo_in_process("report", "--study", "steady", "--studies", str(studies), env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "has no trials yet" in result.stderr


@pytest.mark.slow
def test_a_study_of_failed_trials_reports_them_without_a_front(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path / "ws", max_step=3, trials=1, concurrency=1, fail_trial=0, pace=0.01)
    build_controller(study_config(studies, "steady"), cache_dir=tmp_path / "cache").run()
    env = {"HPO_CACHE_DIR": str(tmp_path / "cache")}
    result = hpo_in_process("report", "--study", "steady", "--studies", str(studies), "--out", str(tmp_path / "out"),
                            env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "no complete or pruned trial with a cost yet (1 fail): no Pareto front" in result.stderr
    frame = pd.read_csv(tmp_path / "out" / "steady-trials.csv")
    assert list(frame["state"]) == ["fail"] and "boom at step 2" in frame.loc[0, "error"]
    with Image.open(tmp_path / "out" / "steady-front.png") as image:
        image.load()
    assert "no Pareto front" in (tmp_path / "out" / "steady-report.html").read_text()


DEMO = """
studies:
  demo:
    objective: digits_mlp
    direction: minimize
    metric: val_loss
    search_space:
      lr: {type: float, low: 1.0e-3, high: 1.0, log: true}
      hidden: {type: int, low: 32, high: 128, step: 32}
      depth: {type: int, low: 1, high: 2}
      weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
      batch_size: {type: categorical, choices: [32, 64, 128]}
      activation: {type: categorical, choices: [relu, tanh]}
    sampler: {type: tpe, seed: 42, n_startup_trials: 4, constant_liar: true}
    pruner: {type: median, n_startup_trials: 3, n_warmup_steps: 3, interval_steps: 1}
    fidelity: {max_step: 10, eval_interval: 1, step_unit: epoch}
    compute: {backend: local}
    budget: {trials: 8, concurrency: 2, max_attempts: 2}
    volume: {path: storage}
    poll_interval: 0.1
"""


@pytest.mark.slow
def test_hpo_report_after_a_small_demo_run_draws_the_front(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "objectives").mkdir(parents=True)
    (project / "objectives" / "__init__.py").write_text("")
    (project / "objectives" / "digits_mlp.py").write_text((REPO / "objectives" / "digits_mlp.py").read_text())
    (project / "studies.yaml").write_text(DEMO)
    env = {**os.environ, "HPO_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run(check=False, args=[sys.executable, "-m", "hpo", "run", "--study", "demo", "-q"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr

    result = hpo_in_process("report", "--study", "demo", cwd=project, env=env)  # `hpo run` above was the real entry point
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = project / "reports" / "demo"
    paths = [out / "demo-trials.csv", out / "demo-report.html", out / "demo-front.png"]
    assert result.stdout.rstrip().splitlines()[-3:] == [f"  {p}" for p in paths]  # the paths come last
    assert "Pareto front (cost (CPU-seconds) against val_loss)" in result.stdout
    assert "CPU-seconds" in result.stdout and "cost nothing" in result.stdout  # says why the axis is CPU time

    frame = pd.read_csv(paths[0])
    assert len(frame) == 8 and set(frame["state"]) <= {"complete", "pruned"}
    front = frame[frame["on_front"]]
    assert len(front) >= 1 and (frame["cost_usd"] == 0).all()
    # A finished worker always says its CPU time; a pruned one only if it could before its SIGKILL
    # (on a loaded machine the 5 s grace can pass first): then its CPU time is unknown, never 0.
    assert (frame.loc[frame["state"] == "complete", "cpu_seconds"] > 0).all()
    assert (frame["cpu_seconds"].isna() | (frame["cpu_seconds"] > 0)).all()
    best = frame.loc[frame["best_value"].idxmin()]
    assert best["on_front"]  # the best loss is always on the front
    assert "Pareto front" in paths[1].read_text()

    # The front is visible: the PNG has a fair number of the front's red pixels.
    pixels = np.asarray(Image.open(paths[2]).convert("RGB")).reshape(-1, 3).astype(int)
    red = (np.abs(pixels - np.array([0xD6, 0x27, 0x28])).sum(axis=1) < 60).sum()
    assert red > 200

    as_json = json.loads(hpo_in_process("report", "--study", "demo", "--json", cwd=project, env=env).stdout)
    assert as_json["cost_axis"] == "cpu_seconds" and as_json["front"] and as_json["files"]["png"] == str(paths[2])

    # The controller put the front in optuna-dashboard too (a custom plot of the study).
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects  # type: ignore[import-untyped]

    config = study_config(project / "studies.yaml", "demo")
    storage = open_storage(study_volume(config), "demo", cache_dir=tmp_path / "reader")
    study = storage.load_study("demo")
    assert study is not None
    plots = get_plotly_graph_objects(storage.optuna.get_study_system_attrs(study._study_id))
    assert "Pareto front" in plots["hpo-cost-vs-loss"]
