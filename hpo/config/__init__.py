"""studies.yaml -> validated, typed, frozen study configurations.

``load_study(path, name)`` is what a command needs; ``load_studies(path)``
checks the whole file. Every problem raises :class:`hpo.errors.ConfigError`
with one line naming the file, the study, the dotted key and, for a typo, the
nearest valid name.

Offers the study (:class:`StudyConfig`) and its parts (search space, sampler,
pruner, fidelity, budget), the loaders, and the building blocks of a
backend's own config models: :class:`ComputeConfig`, :class:`VolumeConfig`,
:class:`ConfigModel` and the checked field helpers. The backends' models
(``LocalCompute``, ``RunPodCompute``, ``RunPodVolume``...) live with their
backends (``hpo/backends/<name>/_config.py``), which build on this package;
they are reachable here too, by name, through the backends' registry on
first use (:func:`__getattr__`).
"""

from __future__ import annotations

from typing import Any

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
from hpo.config._base import Bool, ConfigModel, Token, integer, list_of
from hpo.config._compute import Compute, ComputeConfig, Volume, VolumeConfig, folder_path
from hpo.config._load import load_studies, load_study, load_study_template, placeholder_problem, study_document
from hpo.config._messages import closest, fail, hint, kind_of, show
from hpo.config._schema import Budget, Fidelity, StudiesFile, StudyConfig
from hpo.config._space import CategoricalParam, FloatParam, IntParam, Param

__all__ = [
    "Bool",
    "Budget",
    "CategoricalParam",
    "Compute",
    "ComputeConfig",
    "ConfigModel",
    "Fidelity",
    "FloatParam",
    "HyperbandPrunerConfig",
    "IntParam",
    "MedianPrunerConfig",
    "NopPrunerConfig",
    "Param",
    "PercentilePrunerConfig",
    "PrunerConfig",
    "RandomSamplerConfig",
    "SamplerConfig",
    "StudiesFile",
    "StudyConfig",
    "SuccessiveHalvingPrunerConfig",
    "TPESamplerConfig",
    "Token",
    "Volume",
    "VolumeConfig",
    "closest",
    "fail",
    "folder_path",
    "hint",
    "kind_of",
    "integer",
    "list_of",
    "load_studies",
    "load_study",
    "load_study_template",
    "placeholder_problem",
    "show",
    "study_document",
]


def __getattr__(name: str) -> Any:
    """A backend's config model by its class name (``RunPodCompute``), for code that imports it from here.

    The models are defined with their backends, which build on this package,
    so they cannot be imported when it is: the backends' registry finds them
    on first use. New code imports them from the backend (``hpo.backends.runpod``).
    """
    if not name.startswith("_"):  # never for dunders and submodules: those are looked up during imports
        import hpo.backends

        model = hpo.backends.config_models().get(name)
        if model is not None:
            return model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
