"""Sampler and pruner settings, and the Optuna objects they build.

Each model holds exactly the arguments its Optuna class takes, with Optuna's
defaults, except TPE's ``constant_liar``: trials here run in parallel for
hours, and without it TPE hands out near-duplicates of the trials still
running.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal, Self

import numpy as np
from optuna.exceptions import ExperimentalWarning
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    PatientPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
    WilcoxonPruner,
)
from optuna.samplers import RandomSampler, TPESampler
from pydantic import Field, PlainValidator, model_validator

from hpo.config._base import (
    MAX_STEPS,
    Bool,
    ConfigModel,
    StepCount,
    StepCount0,
    TrialCount,
    TrialCount0,
    integer,
    number,
    tagged,
)
from hpo.config._messages import fail, show

_SEED_MAX = 2**32 - 1  # numpy's RandomState, which Optuna seeds, refuses larger seeds

Seed = Annotated[int, PlainValidator(integer(ge=0, le=_SEED_MAX))]
ReductionFactor = Annotated[int, PlainValidator(integer(ge=2, le=1000))]
StoppingRate = Annotated[int, PlainValidator(integer(ge=0, le=100))]
Percentile = Annotated[float, PlainValidator(number(ge=0, le=100))]


def trial_seed(seed: int, trial_number: int) -> int:
    """The sampler seed for one trial: a stream of its own, derived from the study's seed and its number.

    Optuna seeds a sampler's random stream once, when it is built, so every
    ``hpo run`` of a resumed study would restart the stream and propose the
    first run's parameters again (paid for twice). A sampler built per trial
    from ``(seed, number)`` is as reproducible, and never repeats the stream of
    another trial, however often the study is interrupted.
    """
    return int(np.random.SeedSequence([seed, trial_number]).generate_state(1)[0])


def _auto_or_int(value: Any) -> int | Literal["auto"]:
    if value == "auto" and isinstance(value, str):
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_STEPS:
        raise fail(f"must be 'auto' or an integer from 1 to {MAX_STEPS} (got {show(value)})")
    return value


AutoOrInt = Annotated[int | Literal["auto"], PlainValidator(_auto_or_int)]


class TPESamplerConfig(ConfigModel):
    """Optuna's TPE sampler; ``constant_liar`` defaults to true for parallel trials."""

    type: Literal["tpe"] = "tpe"
    seed: Seed | None = None
    n_startup_trials: TrialCount0 = 10
    constant_liar: Bool = True
    multivariate: Bool = False

    def build(self, trial_number: int | None = None) -> TPESampler:
        """Return a new ``TPESampler`` with these arguments (seeded for ``trial_number``: see :func:`trial_seed`)."""
        return TPESampler(
            seed=self.seed if self.seed is None or trial_number is None else trial_seed(self.seed, trial_number),
            n_startup_trials=self.n_startup_trials,
            constant_liar=self.constant_liar,
            multivariate=self.multivariate,
        )


class RandomSamplerConfig(ConfigModel):
    """Optuna's random sampler."""

    type: Literal["random"] = "random"
    seed: Seed | None = None

    def build(self, trial_number: int | None = None) -> RandomSampler:
        """Return a new ``RandomSampler`` (seeded for ``trial_number``: see :func:`trial_seed`)."""
        return RandomSampler(seed=self.seed if self.seed is None or trial_number is None else trial_seed(self.seed, trial_number))


SAMPLER_TYPES = ("tpe", "random")

SamplerConfig = Annotated[
    TPESamplerConfig | RandomSamplerConfig,
    Field(discriminator="type"),
    tagged("type", SAMPLER_TYPES, what="sampler", shorthand=True),
]
"""A sampler, chosen by ``type``; ``sampler: random`` is short for ``{type: random}``."""


class _CurvePruner(ConfigModel):
    """Arguments shared by the median and percentile pruners."""

    n_startup_trials: TrialCount0 = 5
    n_warmup_steps: StepCount0 = 0
    interval_steps: StepCount = 1
    n_min_trials: TrialCount = 1


class MedianPrunerConfig(_CurvePruner):
    """Optuna's median pruner (the default)."""

    type: Literal["median"] = "median"

    def build(self, max_step: int | None = None) -> MedianPruner:
        """Return a new ``MedianPruner``; ``max_step`` is not needed."""
        return MedianPruner(
            n_startup_trials=self.n_startup_trials,
            n_warmup_steps=self.n_warmup_steps,
            interval_steps=self.interval_steps,
            n_min_trials=self.n_min_trials,
        )


class PercentilePrunerConfig(_CurvePruner):
    """Optuna's percentile pruner: prune below the given percentile of the other trials."""

    type: Literal["percentile"] = "percentile"
    percentile: Percentile

    def build(self, max_step: int | None = None) -> PercentilePruner:
        """Return a new ``PercentilePruner``; ``max_step`` is not needed."""
        return PercentilePruner(
            self.percentile,
            n_startup_trials=self.n_startup_trials,
            n_warmup_steps=self.n_warmup_steps,
            interval_steps=self.interval_steps,
            n_min_trials=self.n_min_trials,
        )


class SuccessiveHalvingPrunerConfig(ConfigModel):
    """Optuna's (asynchronous) successive-halving pruner."""

    type: Literal["successive_halving"] = "successive_halving"
    min_resource: AutoOrInt = "auto"
    reduction_factor: ReductionFactor = 4
    min_early_stopping_rate: StoppingRate = 0
    bootstrap_count: TrialCount0 = 0

    @model_validator(mode="after")
    def _check_bootstrap(self) -> Self:
        # Optuna refuses the pair: with 'auto' it cannot know when bootstrapping ends.
        if self.bootstrap_count > 0 and self.min_resource == "auto":
            raise fail(
                f"must be 0 when min_resource is 'auto' (got {self.bootstrap_count})",
                "bootstrap_count",
            )
        return self

    def build(self, max_step: int | None = None) -> SuccessiveHalvingPruner:
        """Return a new ``SuccessiveHalvingPruner`` (it has no maximum: ``max_step`` is unused)."""
        return SuccessiveHalvingPruner(
            min_resource=self.min_resource,
            reduction_factor=self.reduction_factor,
            min_early_stopping_rate=self.min_early_stopping_rate,
            bootstrap_count=self.bootstrap_count,
        )


class HyperbandPrunerConfig(ConfigModel):
    """Optuna's Hyperband pruner."""

    type: Literal["hyperband"] = "hyperband"
    min_resource: StepCount = 1
    max_resource: AutoOrInt = "auto"
    reduction_factor: ReductionFactor = 3
    bootstrap_count: TrialCount0 = 0

    @model_validator(mode="after")
    def _check_resources(self) -> Self:
        if self.max_resource != "auto" and self.max_resource < self.min_resource:
            raise fail(
                f"must be >= min_resource (got max_resource={self.max_resource}, "
                f"min_resource={self.min_resource})",
                "max_resource",
            )
        return self

    def build(self, max_step: int | None = None) -> HyperbandPruner:
        """Return a new ``HyperbandPruner``.

        Args:
            max_step: The study's ``fidelity.max_step``. It replaces
                ``max_resource: auto``: the step count is known up front, so
                Optuna need not guess it from the first finished trial (which
                may be pruned or preempted here). Without it, 'auto' is passed
                on, and Optuna refuses 'auto' with a ``bootstrap_count``.
        """
        max_resource = self.max_resource
        if max_resource == "auto" and max_step is not None:
            max_resource = max_step
        return HyperbandPruner(
            min_resource=self.min_resource,
            max_resource=max_resource,
            reduction_factor=self.reduction_factor,
            bootstrap_count=self.bootstrap_count,
        )


class NopPrunerConfig(ConfigModel):
    """No pruning: every trial runs to ``fidelity.max_step``."""

    type: Literal["none"] = "none"

    def build(self, max_step: int | None = None) -> NopPruner:
        """Return a new ``NopPruner``."""
        return NopPruner()


class WilcoxonPrunerConfig(ConfigModel):
    """Optuna's Wilcoxon pruner: prune once a trial's values are significantly worse than the best trial's.

    It compares the values both trials reported at the same steps (a
    signed-rank test), so it suits objectives whose steps are comparable
    instances (folds, evaluation batches) more than learning curves.
    """

    type: Literal["wilcoxon"] = "wilcoxon"
    p_threshold: Annotated[float, PlainValidator(number(gt=0, le=1))] = 0.1
    n_startup_steps: StepCount0 = 2

    def build(self, max_step: int | None = None) -> WilcoxonPruner:
        """Return a new ``WilcoxonPruner`` (experimental in Optuna: its warning says nothing a user can act on)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return WilcoxonPruner(p_threshold=self.p_threshold, n_startup_steps=self.n_startup_steps)


PRUNER_TYPES = ("median", "percentile", "successive_halving", "hyperband", "wilcoxon", "patient", "none")
_WRAPPABLE_TYPES = tuple(t for t in PRUNER_TYPES if t != "patient")

_PRUNER_HINTS = {
    "nop": "; did you mean 'none'?",
    "sha": "; did you mean 'successive_halving'?",
    "asha": "; did you mean 'successive_halving'?",
}

WrappablePruner = Annotated[
    MedianPrunerConfig
    | PercentilePrunerConfig
    | SuccessiveHalvingPrunerConfig
    | HyperbandPrunerConfig
    | WilcoxonPrunerConfig
    | NopPrunerConfig,
    Field(discriminator="type"),
    tagged("type", _WRAPPABLE_TYPES, what="pruner", shorthand=True, hints=_PRUNER_HINTS),
]
"""A pruner that :class:`PatientPrunerConfig` may wrap (any but another patient one)."""


class PatientPrunerConfig(ConfigModel):
    """Optuna's patient pruner: prune a trial whose value has not improved for ``patience`` steps.

    ``wrapped`` (another pruner) is asked only once patience has run out,
    so a slow start is forgiven; without it, running out of patience prunes.
    """

    type: Literal["patient"] = "patient"
    patience: Annotated[int, PlainValidator(integer(ge=0, le=MAX_STEPS))]
    min_delta: Annotated[float, PlainValidator(number(ge=0, le=1e300))] = 0.0
    wrapped: WrappablePruner | None = None

    def build(self, max_step: int | None = None) -> PatientPruner:
        """Return a new ``PatientPruner`` around the wrapped pruner (built with the same ``max_step``)."""
        inner: BasePruner | None = self.wrapped.build(max_step) if self.wrapped is not None else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return PatientPruner(inner, patience=self.patience, min_delta=self.min_delta)


PrunerConfig = Annotated[
    MedianPrunerConfig
    | PercentilePrunerConfig
    | SuccessiveHalvingPrunerConfig
    | HyperbandPrunerConfig
    | WilcoxonPrunerConfig
    | PatientPrunerConfig
    | NopPrunerConfig,
    Field(discriminator="type"),
    tagged("type", PRUNER_TYPES, what="pruner", shorthand=True, hints=_PRUNER_HINTS),
]
"""A pruner, chosen by ``type``; ``pruner: none`` is short for ``{type: none}``."""
