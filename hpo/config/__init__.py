"""studies.yaml -> validated, typed, frozen study configurations.

``load_study(path, name)`` is what a command needs; ``load_studies(path)``
checks the whole file. Every problem raises :class:`hpo.errors.ConfigError`
with one line naming the file, the study, the dotted key and, for a typo, the
nearest valid name.
"""

from __future__ import annotations

from hpo.config._algorithms import (
    HyperbandPrunerConfig,
    MedianPrunerConfig,
    NopPrunerConfig,
    PercentilePrunerConfig,
    PrunerConfig,
    RandomSamplerConfig,
    SamplerConfig,
    SuccessiveHalvingPrunerConfig,
    TPESamplerConfig,
)
from hpo.config._compute import (
    Compute,
    LocalCompute,
    LocalVolume,
    RunPodCompute,
    RunPodVolume,
    Volume,
)
from hpo.config._load import load_studies, load_study, load_study_template, placeholder_problem
from hpo.config._schema import Budget, Fidelity, StudiesFile, StudyConfig
from hpo.config._space import CategoricalParam, FloatParam, IntParam, Param

__all__ = [
    "Budget",
    "CategoricalParam",
    "Compute",
    "Fidelity",
    "FloatParam",
    "HyperbandPrunerConfig",
    "IntParam",
    "LocalCompute",
    "LocalVolume",
    "MedianPrunerConfig",
    "NopPrunerConfig",
    "Param",
    "PercentilePrunerConfig",
    "PrunerConfig",
    "RandomSamplerConfig",
    "RunPodCompute",
    "RunPodVolume",
    "SamplerConfig",
    "StudiesFile",
    "StudyConfig",
    "SuccessiveHalvingPrunerConfig",
    "TPESamplerConfig",
    "Volume",
    "load_studies",
    "load_study",
    "load_study_template",
    "placeholder_problem",
]
