"""One study's validated configuration, and the file of studies.

Rules that involve one key live in the key's type; the rules here relate
keys to each other and fill the defaults that depend on other keys. What a
backend requires of the rest of a study (a RunPod pod can only mount a RunPod
volume in one of its data centers) its compute model says
(:meth:`~hpo.config.ComputeConfig.check_volume`), so nothing here names a backend.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from optuna.distributions import BaseDistribution
from optuna.pruners import BasePruner
from pydantic import PlainValidator, PrivateAttr, ValidationInfo, field_validator, model_validator

from hpo.config._algorithms import (
    MedianPrunerConfig,
    PrunerConfig,
    SamplerConfig,
    TPESamplerConfig,
)
from hpo.config._base import (
    MAX_ITEMS,
    Bool,
    ConfigModel,
    StepCount,
    Text,
    TrialCount,
    choice,
    integer,
    number,
)
from hpo.config._compute import Compute, ComputeConfig, Volume, compute_model, default_backend
from hpo.config._messages import fail, show, unknown_study
from hpo.config._space import SEARCH_SPACE_FUNCTION, Param, module_search_space, objective_module_file
from hpo.errors import ConfigError

TAGGED_AT: Mapping[str, int] = {
    "sampler": 1,
    "pruner": 1,
    "search_space": 2,
}
"""Where pydantic puts a union's branch name in an error location, per top-level key.

``('pruner', 'median', 'n_warmup_steps')`` names the median branch at index 1;
``('search_space', 'lr', 'float', 'low')`` names the float branch at index 2.
The messages drop these, since the user never wrote them. (``compute`` and
``volume`` are validated by their backend's model directly: no branch name.)
"""

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""A study's name becomes part of pod names and volume paths (``hpo/<study>/``)."""

DEFAULT_METRICS = {"minimize": "loss", "maximize": "score"}
"""A study's ``metric`` when it names none, by direction: what the objective returns, for people."""

DEFAULT_VOLUME = {"path": "storage"}
"""The volume of a study that names none, where its backend does not require one."""

# Upper bounds: far above any real study, low enough that no arithmetic on them
# overflows (a poll interval of 1e300 s once did, in the controller's sleep).
MAX_POLL_INTERVAL = 86400.0
"""One day between polls."""
MAX_CONCURRENCY = 1000
MAX_ATTEMPTS = 100
MAX_TRIAL_SECONDS = 30 * 86400.0
"""Thirty days for one attempt."""
MAX_USD = 1e7
MAX_GPU_HOURS = 1e7
MAX_PARAMETERS = MAX_ITEMS


def check_study_name(name: Any) -> str | None:
    """Say what is wrong with a study name, or None if it is fine."""
    if not isinstance(name, str):
        return f"study names must be strings (got {show(name)}); quote it"
    if not STUDY_NAME.fullmatch(name):
        return (
            "invalid study name: use letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 64 characters"
        )
    return None


def _objective(value: Any) -> str:
    if isinstance(value, str) and value.isidentifier() and not keyword.iskeyword(value):
        return value
    message = f"must be a Python identifier naming objectives/<name>.py (got {show(value)})"
    if isinstance(value, str):
        guess = value.removesuffix(".py").removeprefix("objectives/")
        guess = re.sub(r"[^0-9A-Za-z_]", "_", guess)
        if guess != value and guess.isidentifier() and not keyword.iskeyword(guess):
            message += f"; did you mean {guess!r}?"
    raise fail(message)


_STORAGE_URL = re.compile(r"(sqlite:///.+|(postgresql|mysql)(\+\w+)?://.+)")


def _redact(url: str) -> str:
    """Hide a password in a database URL before it appears in a message."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


def _storage(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not _STORAGE_URL.fullmatch(value):
        shown = _redact(value) if isinstance(value, str) else value
        if isinstance(value, str) and value.startswith("postgres://"):
            # SQLAlchemy dropped this alias; Heroku-style URLs still use it.
            advice = "; write postgresql:// (SQLAlchemy no longer accepts postgres://)"
        else:
            advice = "; leave it out to keep the journal on the volume"
        raise fail(
            "must be a database URL: sqlite:///<file>, postgresql[+driver]://... or "
            f"mysql[+driver]://... (got {show(shown)}){advice}"
        )
    # Like volume.path, a relative SQLite file is relative to studies.yaml's directory.
    base = (info.context or {}).get("base_dir")
    path = value.removeprefix("sqlite:///")
    is_file = value.startswith("sqlite:///") and path != ":memory:"
    relative = is_file and not Path(path).is_absolute()
    if relative and base:
        return "sqlite:///" + str(Path(base) / path)
    return value


class Fidelity(ConfigModel):
    """What a step is, and how many steps a full trial takes.

    ``checkpoint_seconds``: an objective that honours it (the PyTorch loop of
    ``objectives/_torch_training.py`` does) checkpoints at the first evaluation
    at least that many seconds after its last checkpoint (or the attempt's
    start), and after the last step, instead of at every evaluation: a
    multi-GB checkpoint costs GPU time, and a preemption then loses at most
    that much work. Unset: at every evaluation.

    ``max_step`` may be left out (the whole ``fidelity`` too): a one-shot
    objective reports nothing, and one whose pruning callback reports every
    boosting round may not know its last step. The pruner is then asked at
    every report, and ``trial.max_step`` is an error in the objective.
    """

    max_step: StepCount | None = None
    eval_interval: StepCount = 1
    step_unit: Text = "epoch"
    checkpoint_seconds: Annotated[float, PlainValidator(number(gt=0, le=MAX_TRIAL_SECONDS))] | None = None

    @model_validator(mode="after")
    def _check_interval(self) -> Self:
        if self.max_step is not None and self.eval_interval > self.max_step:
            raise fail(
                f"must be <= max_step (got eval_interval={self.eval_interval}, "
                f"max_step={self.max_step})",
                "eval_interval",
            )
        return self


class Budget(ConfigModel):
    """What the study may spend: trials, parallel trials, attempts per trial, USD, GPU-hours.

    ``max_failures_in_a_row``: after that many trials in a row failed with the
    same error (an import error in the objective, a missing data file), no
    more trials are launched: the next one would fail the same way, at a price.
    ``max_trial_seconds``: an attempt still running after that many seconds
    (an objective that hangs) is stopped and its trial fails with that reason;
    off unless set.
    """

    trials: TrialCount
    concurrency: Annotated[int, PlainValidator(integer(ge=1, le=MAX_CONCURRENCY))] = 1
    max_attempts: Annotated[int, PlainValidator(integer(ge=1, le=MAX_ATTEMPTS))] = 3
    max_failures_in_a_row: TrialCount = 3
    max_trial_seconds: Annotated[float, PlainValidator(number(gt=0, le=MAX_TRIAL_SECONDS))] | None = None
    usd: Annotated[float, PlainValidator(number(gt=0, le=MAX_USD))] | None = None
    gpu_hours: Annotated[float, PlainValidator(number(gt=0, le=MAX_GPU_HOURS))] | None = None


MAX_IDLE_LIMIT = 86400.0


class Workers(ConfigModel):
    """How a study's attempts map onto workers (pods, processes).

    ``reuse`` (the default): a worker is long-lived and runs attempt after
    attempt, each in its own process forked from a warm parent, so a pruned
    trial frees a warm GPU instead of throwing it away. ``reuse: false``: one
    worker per attempt, for objectives that cannot share a machine.
    ``idle_limit``: seconds a worker with nothing to do lives on before the
    controller ends it (it ends itself when no controller is alive).
    """

    reuse: Bool = True
    idle_limit: Annotated[float, PlainValidator(number(gt=0, le=MAX_IDLE_LIMIT))] = 120.0


class StudyConfig(ConfigModel):
    """One study of studies.yaml, validated; built by :func:`hpo.config.load_study`.

    ``name`` and ``source`` come from the loader (the study's key and the
    file's absolute path), not from keys in the study.
    """

    _internal_keys: ClassVar[frozenset[str]] = frozenset({"name", "source"})

    name: str
    objective: Annotated[str, PlainValidator(_objective)]
    direction: Annotated[
        Literal["minimize", "maximize"], PlainValidator(choice(("minimize", "maximize")))
    ] = "minimize"
    metric: Text  # filled from the direction when absent (see _fill_defaults)
    search_space: dict[str, Param] | None = None  # None: the objective module's search_space(trial) declares it
    sampler: SamplerConfig = TPESamplerConfig()
    pruner: PrunerConfig = MedianPrunerConfig()
    fidelity: Fidelity = Fidelity()
    compute: Compute  # filled with the default backend when absent (see _fill_defaults)
    budget: Budget
    workers: Workers = Workers()
    volume: Volume
    storage: Annotated[str, PlainValidator(_storage)] | None = None
    poll_interval: Annotated[float, PlainValidator(number(gt=0, le=MAX_POLL_INTERVAL))]
    source: Path

    _space_source: Literal["studies.yaml", "search_space"] = PrivateAttr("studies.yaml")

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        for key, value in (info.context or {}).items():
            if key in cls._internal_keys:
                if key in data:
                    why = "; a study's name is its key under 'studies'" if key == "name" else ""
                    raise fail("unknown key" + why, key)
                data[key] = value
        data.setdefault("compute", default_backend())
        # What the objective returns, as the report, `hpo status` and optuna-dashboard name it.
        data.setdefault("metric", DEFAULT_METRICS.get(data.get("direction", "minimize"), "loss"))
        # The defaults of these two depend on the backend (and on where the file is).
        model = compute_model(_backend_of(data["compute"]))  # None: an unknown backend, refused below
        if "volume" not in data:
            if model is not None and model.volume_required is not None:
                raise fail(f"required key missing: {model.volume_required}", "volume")
            data["volume"] = dict(DEFAULT_VOLUME)
        if "poll_interval" not in data:
            data["poll_interval"] = (model or ComputeConfig).default_poll_interval
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        problem = check_study_name(value)
        if problem is not None:
            raise fail(problem)
        return value

    @field_validator("search_space", mode="before")
    @classmethod
    def _check_space(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and not value:
            raise fail("must declare at least one parameter (got {})")
        if isinstance(value, Mapping) and len(value) > MAX_PARAMETERS:
            raise fail(f"must declare at most {MAX_PARAMETERS} parameters (got {len(value)})")
        return value

    @model_validator(mode="after")
    def _check_together(self) -> Self:
        self.compute.check_volume(self.volume)
        self._space_source = self._find_space()
        # Backstop: let Optuna itself refuse what the checks above missed, at load time.
        for name, param in (self.search_space or {}).items():
            try:
                param.to_distribution()
            except ValueError as exc:
                raise fail(str(exc), "search_space", name) from None
        try:
            self.build_pruner()
        except ValueError as exc:
            raise fail(str(exc), "pruner") from None
        return self

    def _find_space(self) -> Literal["studies.yaml", "search_space"]:
        """Where the study's space is declared: this study's ``search_space`` or its module's function (one of them).

        The module is read, not imported (see :func:`module_search_space`); a
        module that is missing or does not parse defines nothing here (running
        the study names that problem).
        """
        folder = self.source.parent / "objectives"
        path = objective_module_file(folder, self.objective)
        shown = f"objectives/{path.relative_to(folder).as_posix()}"
        function = f"{SEARCH_SPACE_FUNCTION}(trial)"
        try:
            defined = module_search_space(path)
            problem = None
        except (OSError, SyntaxError, ValueError) as exc:  # ValueError: a NUL byte in the source
            defined = False
            problem = "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be read ({type(exc).__name__})"
        if self.search_space is not None and defined:
            raise fail(
                f"declared here and by {function} in {shown}: keep one of the two (drop this key to search the "
                "module's space)",
                "search_space",
            )
        if self.search_space is None and not defined:
            where = f"{shown} {problem}" if problem else f"{shown} defines no {function}"
            raise fail(
                f"required key missing, and {where}: declare the parameters here, or define {function} there",
                "search_space",
            )
        return "search_space" if defined else "studies.yaml"

    @property
    def space_source(self) -> Literal["studies.yaml", "search_space"]:
        """``"search_space"`` when the objective module's ``search_space(trial)`` declares the space (define-by-run)."""
        return self._space_source

    def distributions(self) -> dict[str, BaseDistribution]:
        """Return Optuna's distribution for each parameter of studies.yaml, in declaration order (none: define-by-run)."""
        return {name: param.to_distribution() for name, param in (self.search_space or {}).items()}

    def build_pruner(self) -> BasePruner:
        """Return the study's pruner, its 'auto' maximum resolved to ``fidelity.max_step``."""
        return self.pruner.build(max_step=self.fidelity.max_step)


def _backend_of(compute: Any) -> Any:
    """The compute backend named in raw (unvalidated) input, for defaults that depend on it."""
    if isinstance(compute, ComputeConfig):
        return compute.backend
    if isinstance(compute, Mapping):
        return compute.get("backend", default_backend())
    return compute  # a bare name (shorthand), or junk the validation refuses


@dataclass(frozen=True)
class StudiesFile:
    """Every study of one studies.yaml, validated; built by :func:`hpo.config.load_studies`.

    Attributes:
        path: The file, as the caller named it (``StudyConfig.source`` is absolute).
        studies: Study name to config, in the file's order.
    """

    path: Path
    studies: dict[str, StudyConfig] = field(default_factory=dict)

    def get(self, name: str) -> StudyConfig:
        """Return the named study.

        Raises:
            ConfigError: No such study; the message suggests the nearest name.
        """
        if name not in self.studies:
            raise ConfigError(unknown_study(str(self.path), name, list(self.studies)))
        return self.studies[name]
