"""FastPercentilePruner decides exactly as Optuna's PercentilePruner / MedianPruner, on random studies."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.pruners import BasePruner, MedianPruner, NopPruner, PercentilePruner, SuccessiveHalvingPruner
from optuna.trial import FrozenTrial, TrialState, create_trial

from hpo.controller._fast_pruners import FastPercentilePruner, StepValues, fast_pruner
from hpo.controller._pruning import absorb_told, install_fast_pruner

optuna.logging.set_verbosity(optuna.logging.WARNING)

_SPECIALS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0]


def _value(rng: random.Random) -> float:
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(_SPECIALS)
    if roll < 0.35:
        return float(rng.randint(0, 4))  # ties
    return rng.uniform(-10, 10)


def _curve(rng: random.Random, max_step: int) -> dict[int, float]:
    """Random intermediate values over a random subset of steps (missing steps, out of order)."""
    steps = [s for s in range(max_step) if rng.random() < rng.choice((0.3, 0.7, 1.0))]
    rng.shuffle(steps)
    return {s: _value(rng) for s in steps}


def _random_pruner(rng: random.Random) -> PercentilePruner:
    kwargs = {
        "n_startup_trials": rng.choice((0, 1, 2, 5)),
        "n_warmup_steps": rng.choice((0, 0, 1, 3)),
        "interval_steps": rng.choice((1, 1, 2, 3)),
        "n_min_trials": rng.choice((1, 1, 2, 4)),
    }
    if rng.random() < 0.3:
        return MedianPruner(**kwargs)
    percentile = rng.choice((0.0, 100.0, 50.0, 25.0, 33.3, rng.uniform(0, 100)))
    return PercentilePruner(percentile, **kwargs)


def _compare_case(seed: int) -> int:
    """Build a random study and compare both pruners at every step of every running trial; return the asks."""
    rng = random.Random(seed)
    direction = rng.choice(("minimize", "maximize"))
    reference = _random_pruner(rng)
    study = optuna.create_study(direction=direction, pruner=reference)
    dist = {"x": FloatDistribution(0, 1)}
    max_step = rng.randint(1, 8)
    for _ in range(rng.randint(0, 25)):
        state = rng.choice((TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        study.add_trial(
            create_trial(
                state=state,
                value=rng.uniform(0, 1) if state == TrialState.COMPLETE else None,
                params={"x": 0.5},
                distributions=dist,
                intermediate_values=_curve(rng, max_step),
            )
        )
    fast = fast_pruner(study)
    assert isinstance(fast, FastPercentilePruner)
    asks = 0
    running: list[tuple[int, dict[int, float]]] = []
    for _ in range(rng.randint(1, 6)):
        trial = study.ask()
        running.append((trial._trial_id, _curve(rng, max_step + 2)))
    for trial_id, curve in running:
        for step in sorted(curve):
            study._storage.set_trial_intermediate_value(trial_id, step, curve[step])
            frozen = study._storage.get_trial(trial_id)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # numpy's all-NaN warnings, from both
                expected = reference.prune(study, frozen)
                got = fast.prune(study, frozen)
            assert got == expected, (seed, trial_id, step, frozen.intermediate_values)
            asks += 1
        if rng.random() < 0.5:  # the trial completes: the study, then the fast pruner, learn of it
            study.tell(trial_id, state=TrialState.COMPLETE, values=[rng.uniform(0, 1)])
            absorb_told(_Holder(fast), study._storage, trial_id)
        elif rng.random() < 0.5:
            study.tell(trial_id, state=TrialState.PRUNED)
            absorb_told(_Holder(fast), study._storage, trial_id)
    return asks


class _Holder:
    """A stand-in study whose pruner is the fast one (the reference study keeps Optuna's)."""

    def __init__(self, pruner: BasePruner) -> None:
        self.pruner = pruner


def test_identical_to_optuna_on_random_studies() -> None:
    asks = sum(_compare_case(seed) for seed in range(1500))
    assert asks > 5000  # the cases really asked, many times


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50])
def test_step_percentile_matches_numpy(n: int) -> None:
    rng = random.Random(n)
    for _ in range(300):
        values = [_value(rng) for _ in range(n)]
        step = StepValues()
        for v in values:
            step.add(v)
        for q in (0.0, 100.0, 50.0, rng.uniform(0, 100)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                expected = float(np.nanpercentile(np.array(values, dtype=float), q))
            got = step.percentile(q)
            assert (math.isnan(got) and math.isnan(expected)) or got == expected, (values, q)


def test_absorb_counts_a_complete_trial_once_and_ignores_others() -> None:
    pruner = FastPercentilePruner(50.0, 0, 0, 1, 1)
    done = create_trial(state=TrialState.COMPLETE, value=1.0, intermediate_values={0: 1.0})
    pruned = create_trial(state=TrialState.PRUNED, value=None, intermediate_values={0: 1.0})
    done._trial_id, pruned._trial_id = 1, 2
    for trial in (done, done, pruned):
        pruner.absorb(trial)
    assert pruner.n_complete == 1


def _study_with(pruner: BasePruner, completed: int) -> optuna.Study:
    study = optuna.create_study(pruner=pruner)
    for i in range(completed):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=float(i), intermediate_values={0: float(i)}))
    return study


def test_install_replaces_percentile_and_median_with_history_absorbed() -> None:
    for pruner in (MedianPruner(n_startup_trials=2), PercentilePruner(25.0, n_min_trials=3)):
        study = _study_with(pruner, 4)
        install_fast_pruner(study)
        assert isinstance(study.pruner, FastPercentilePruner)
        assert study.pruner.n_complete == 4


@pytest.mark.parametrize("pruner", [NopPruner(), SuccessiveHalvingPruner()])
def test_install_keeps_other_pruners(pruner: BasePruner) -> None:
    study = _study_with(pruner, 2)
    install_fast_pruner(study)
    assert study.pruner is pruner
    absorb_told(study, study._storage, study.trials[0]._trial_id)  # harmless


def test_a_subclass_is_not_replaced() -> None:
    class Custom(MedianPruner):
        def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
            return True

    pruner = Custom()
    study = _study_with(pruner, 1)
    install_fast_pruner(study)
    assert study.pruner is pruner
