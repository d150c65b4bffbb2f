"""What a trial runs: the spec the controller writes and the agent reads.

It is the only thing the two share besides the event file, so it is plain
JSON validated on both sides. The volume is writable by every pod, so the
reading side takes nothing on trust: integers are JSON integers (never
``true`` or ``"5"``) within bounds, names are short, the code snapshot is a
sha256 (it becomes a volume key), the direction is one of the two, every
parameter's declaration is one Optuna accepts.

A parameter's declaration is written as studies.yaml writes it
(``{"type": "float", "low": 0.001, "high": 1.0, "log": true, "step": null}``),
whether it came from studies.yaml or from the objective module's
``search_space(trial)``; :func:`declaration` and :func:`distribution` convert
between that and Optuna's distributions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from hpo.errors import VolumeError
from hpo.volume import Volume

_MAX_INT = 2**53 - 1
_Name = Annotated[str, Strict(), Field(min_length=1, max_length=200)]
_Steps = Annotated[int, Strict(), Field(ge=1, le=_MAX_INT)]

#: Where a study's search space comes from: studies.yaml's ``search_space``, or the objective module's function.
SpaceSource = Literal["studies.yaml", "search_space"]


class TrialSpec(BaseModel):
    """Everything an attempt needs to run trial ``trial`` of ``study``.

    ``search_space`` holds the declaration of each parameter the trial has
    (for a define-by-run study, only those its ``search_space(trial)``
    sampled), so ``trial.suggest_*`` can check its name and range against it;
    ``space_source`` says which of the two the study uses, for messages.
    ``max_step`` is None when the study declares no ``fidelity.max_step``.
    ``metric`` and ``study_user_attrs`` are what the objective's
    ``trial.study`` shows; ``datetime_start`` is the trial's start (ISO 8601).
    ``code`` is the sha256 of the objectives snapshot on the volume.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    study: _Name
    trial: Annotated[int, Strict(), Field(ge=0, le=_MAX_INT)]
    objective: _Name
    params: dict[str, Any]
    search_space: dict[str, dict[str, Any]]
    space_source: SpaceSource = "studies.yaml"
    max_step: _Steps | None = None
    eval_interval: _Steps = 1
    step_unit: Annotated[str, Strict(), Field(max_length=64)] = "epoch"
    #: ``fidelity.checkpoint_seconds``: the least time between two checkpoints (None: checkpoint at every evaluation).
    checkpoint_seconds: Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)] | None = None
    direction: Literal["minimize", "maximize"] = "minimize"
    metric: Annotated[str, Strict(), Field(max_length=200)] | None = None
    study_user_attrs: dict[str, Any] = Field(default_factory=dict)
    datetime_start: Annotated[str, Strict(), Field(max_length=64)] | None = None
    code: Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    @model_validator(mode="after")
    def _check_params(self) -> Self:
        for name, declared in self.search_space.items():
            try:
                distribution(declared)
            except ValueError as exc:
                raise ValueError(f"search_space.{name}: {exc}") from None
        return self

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna's distribution of every declared parameter, by name."""
        return {name: distribution(declared) for name, declared in self.search_space.items()}

    def write(self, volume: Volume, key: str) -> None:
        """Write the spec atomically to ``key``."""
        volume.write_json(key, self.model_dump(mode="json"))

    @classmethod
    def read(cls, volume: Volume, key: str) -> TrialSpec:
        """Read and validate the spec at ``key``; a malformed one raises :class:`VolumeError`."""
        raw = volume.read_json(key)
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise VolumeError(f"{volume.url}: {key}: not a valid trial spec ({spec_problem(exc)})") from None


def spec_problem(exc: ValidationError) -> str:
    """The first problem pydantic found in a spec, as a short phrase naming the field."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    text = f"{where}: {first['msg']}" if where else first["msg"]
    return text if len(text) <= 200 else text[:197] + "..."


# -- declarations and Optuna's distributions ------------------------------------------------


def declaration(dist: BaseDistribution) -> dict[str, Any]:
    """Optuna's distribution ``dist`` as a spec (and studies.yaml) declares it.

    Raises:
        TypeError: A distribution of a kind ``suggest_*`` never makes (the deprecated ones).
    """
    if isinstance(dist, FloatDistribution):
        return {"type": "float", "low": dist.low, "high": dist.high, "log": dist.log, "step": dist.step}
    if isinstance(dist, IntDistribution):
        return {"type": "int", "low": dist.low, "high": dist.high, "step": dist.step, "log": dist.log}
    if isinstance(dist, CategoricalDistribution):
        return {"type": "categorical", "choices": list(dist.choices)}
    raise TypeError(f"cannot declare a {type(dist).__name__}: only float, int and categorical parameters")


def distribution(declared: Mapping[str, Any]) -> BaseDistribution:
    """The Optuna distribution a declaration stands for (absent ``log``/``step`` take Optuna's defaults).

    Raises:
        ValueError: The declaration is malformed, or Optuna refuses it (a short phrase saying why).
    """
    if not isinstance(declared, Mapping):
        raise ValueError(f"a declaration must be a mapping, not {type(declared).__name__}")
    kind = declared.get("type")
    keys = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"}, "categorical": {"choices"}}
    if kind not in keys:
        raise ValueError(f"unknown parameter type {kind!r} (float, int or categorical)")
    extra = set(declared) - keys[kind] - {"type"}
    if extra:
        raise ValueError(f"unknown key(s) for a {kind} parameter: {', '.join(sorted(extra))}")
    try:
        if kind == "categorical":
            choices = declared.get("choices")
            if not isinstance(choices, list | tuple) or not choices:
                raise ValueError("choices must be a non-empty list")
            return CategoricalDistribution(list(choices))
        low, high, log, step = (declared.get(k) for k in ("low", "high", "log", "step"))
        if not isinstance(log, bool | None):
            raise ValueError(f"log must be true or false (got {log!r})")
        if kind == "float":
            for key, value in (("low", low), ("high", high), ("step", step)):
                if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                    raise ValueError(f"{key} must be a number (got {value!r})")
            if low is None or high is None:
                raise ValueError("low and high are required")
            with warnings.catch_warnings():  # a step that does not divide the range: refused by the config already
                warnings.simplefilter("ignore")
                return FloatDistribution(low, high, log=bool(log), step=step)
        for key, value in (("low", low), ("high", high), ("step", step)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{key} must be an integer (got {value!r})")
        if low is None or high is None:
            raise ValueError("low and high are required")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return IntDistribution(low, high, log=bool(log), step=1 if step is None else step)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{kind} parameter: {exc}") from None


def describe(dist: BaseDistribution) -> str:
    """A distribution in words, for messages: ``float in [0.001, 1.0], log`` or ``one of ['relu', 'tanh']``."""
    if isinstance(dist, CategoricalDistribution):
        return f"categorical, one of {list(dist.choices)!r}"
    if isinstance(dist, FloatDistribution | IntDistribution):
        kind = "float" if isinstance(dist, FloatDistribution) else "int"
        text = f"{kind} in [{dist.low!r}, {dist.high!r}]"
        if dist.log:
            text += ", log"
        if dist.step is not None and not (kind == "int" and dist.step == 1):
            text += f", step {dist.step!r}"
        return text
    return repr(dist)
