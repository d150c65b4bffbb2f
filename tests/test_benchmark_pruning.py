"""The arithmetic of ``benchmarks/pruning.py``: attempt durations, ratios, regrets and the choice (no runs)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "pruning.py"
_spec = importlib.util.spec_from_file_location("benchmark_pruning", PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up by name
_spec.loader.exec_module(bench)


def test_an_attempt_lasts_from_its_start_event_to_its_final_event():
    events = [
        {"type": "start", "t": 100.0, "pid": 1, "host": "h"},
        {"type": "report", "t": 101.0, "step": 1, "value": 0.5},
        {"type": "pruned", "t": 103.5, "step": 1, "cpu_seconds": 0.8},
    ]
    assert bench.attempt_from_events(events) == bench.Attempt(seconds=3.5, cpu_seconds=0.8, end="pruned")


def test_an_attempt_without_a_start_or_an_end_has_no_duration():
    # Pruned by control.json before it started: a final event alone (its CPU still counts).
    assert bench.attempt_from_events([{"type": "pruned", "t": 5.0, "cpu_seconds": 0.3}]) == bench.Attempt(None, 0.3, "pruned")
    # Still running (or killed without a word): a start alone.
    assert bench.attempt_from_events([{"type": "start", "t": 5.0}]) == bench.Attempt(None, None, None)
    # Only the first final event counts.
    events = [{"type": "start", "t": 1.0}, {"type": "done", "t": 2.0, "value": 0.1}, {"type": "error", "t": 9.0}]
    assert bench.attempt_from_events(events) == bench.Attempt(1.0, None, "done")
    assert bench.total([1.0, None, 2.5]) == 3.5


def test_the_ratio_is_the_median_over_seeds_of_each_seeds_ratio():
    pruned = {0: 50.0, 1: 30.0, 2: 90.0}
    unpruned = {0: 100.0, 1: 100.0, 2: 100.0, 3: 100.0}
    assert bench.ratio_median(pruned, unpruned) == pytest.approx(0.5)
    # Seed by seed (0.25, 0.75, 1.0), not the ratio of the medians (50 / 50 = 1.0 here).
    assert bench.ratio_median({0: 10.0, 1: 60.0, 2: 50.0}, {0: 40.0, 1: 80.0, 2: 50.0}) == pytest.approx(0.75)
    assert bench.ratio_median({7: 1.0}, unpruned) is None  # no seed in common
    assert bench.ratio_median({0: 1.0}, {0: 0.0}) is None


def test_regret_is_against_the_best_of_all_unpruned_runs_in_percent():
    reference = bench.reference_best([0.10, 0.08, None, 0.09])
    assert reference == 0.08
    assert bench.reference_best([0.10, 0.08], "maximize") == 0.10
    assert bench.reference_best([None]) is None
    assert bench.regret_percent(0.082, 0.08) == pytest.approx(2.5)
    assert bench.regret_percent(0.078, 0.08) == pytest.approx(-2.5)  # better than the reference
    assert bench.regret_percent(0.95, 1.0, "maximize") == pytest.approx(5.0)
    assert bench.regret_percent(0.0, 0.0) == 0.0
    # The median over seeds, one seed per run; a seed that found nothing is the worst.
    assert bench.regret_median({0: 0.08, 1: 0.084, 2: 0.1}, 0.08) == pytest.approx(5.0)
    assert bench.regret_median({0: 0.08, 1: None, 2: None}, 0.08) == math.inf
    assert bench.regret_median({}, 0.08) is None


def test_the_choice_is_the_smallest_ratio_within_two_percent():
    rows = {
        "median": (0.80, 1.0),
        "hyperband": (0.50, 2.5),  # cheaper, but it loses the best
        "percentile": (0.70, 2.0),  # exactly 2 % counts
        "successive_halving": (None, 0.0),  # no ratio: never chosen
    }
    assert bench.choose(rows) == "percentile"
    assert bench.choose(rows, within=3.0) == "hyperband"
    assert bench.choose({"median": (0.8, 1.0), "percentile": (0.8, 0.5)}) == "percentile"  # a tie: the lower regret
    assert bench.choose({"hyperband": (0.5, 9.0)}) is None
    assert bench.choose({}) is None


def test_every_pruner_it_runs_is_one_studies_yaml_accepts(tmp_path):
    from hpo.config import load_study

    known = bench.supported_pruners()
    assert {"median", "percentile", "successive_halving", "hyperband", "none"} <= known
    base = {
        "objective": "digits_mlp", "metric": "val_loss",
        "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
        "sampler": {"type": "tpe", "seed": 42}, "fidelity": {"max_step": 50},
        "compute": {"backend": "local"}, "budget": {"trials": 24, "concurrency": 3},
        "volume": {"path": "storage"},
    }
    import yaml

    (tmp_path / "objectives").mkdir()
    (tmp_path / "objectives" / "digits_mlp.py").write_text("def objective(trial):\n    return 0.0\n")
    for name, pruner in bench.PRUNERS.items():
        if pruner["type"] not in known:
            continue
        study = bench.demo_study(base, 3, pruner, 5, 2)
        assert study["sampler"] == {"type": "tpe", "seed": 3} and study["budget"] == {"trials": 5, "concurrency": 2}
        (tmp_path / "studies.yaml").write_text(yaml.safe_dump({"studies": {name: study}}))
        config = load_study(tmp_path / "studies.yaml", name)
        assert config.pruner.type == pruner["type"]
