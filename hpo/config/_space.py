"""Search-space parameters: what studies.yaml declares, and Optuna's distribution for each.

The controller samples with Optuna's ``ask(fixed_distributions)`` and writes
the parameters' declarations into each trial's spec, so the pod can check its
``suggest_*`` calls against the same declaration. The rules below are
Optuna's own, checked here so a bad range fails when the file is loaded, with
the key at fault, not when the first trial is asked.

A study may instead take its space from its objective module, the Optuna
way: a ``search_space(trial)`` function there (define-by-run, conditional
parameters allowed). :func:`module_search_space` finds out whether a module
has one by reading its source, never by running it.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from optuna.distributions import (
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import Field, PlainSerializer, PlainValidator, model_validator

from hpo.config._base import (
    MAX_ITEMS,
    MAX_TEXT,
    Bool,
    ConfigModel,
    ParamInt,
    ParamIntStep,
    ParamNumber,
    ParamStep,
    list_of,
    tagged,
)
from hpo.config._messages import fail, show


class FloatParam(ConfigModel):
    """A float in ``[low, high]``, like ``trial.suggest_float(name, low, high, log=, step=)``."""

    type: Literal["float"] = "float"
    low: ParamNumber
    high: ParamNumber
    log: Bool = False
    step: ParamStep | None = None

    @model_validator(mode="after")
    def _check_range(self) -> Self:
        if self.low >= self.high:
            raise fail(f"must be < high (got low={self.low}, high={self.high})", "low")
        if self.log and self.low <= 0:
            raise fail(f"must be > 0 when log is true (got {self.low})", "low")
        if self.step is not None:
            if self.log:
                raise fail("cannot be combined with log: true; drop one of them", "step")
            # Optuna would silently lower `high` to the last multiple; say so instead.
            span = self.high - self.low
            steps = span / self.step
            if steps > MAX_STEPS_IN_RANGE:
                raise fail(
                    f"is too small for the range: (high - low) / step must be at most "
                    f"{MAX_STEPS_IN_RANGE:g} (got step={self.step}, high - low={span})",
                    "step",
                )
            if abs(steps - round(steps)) > 1e-8 * max(1.0, steps) or round(steps) < 1:
                raise fail(
                    f"must divide high - low (got step={self.step}, high - low={span})", "step"
                )
        return self

    def to_distribution(self) -> FloatDistribution:
        """Return Optuna's distribution for this parameter."""
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)


class IntParam(ConfigModel):
    """An integer in ``[low, high]``, like ``trial.suggest_int(name, low, high, step=, log=)``."""

    type: Literal["int"] = "int"
    low: ParamInt
    high: ParamInt
    step: ParamIntStep = 1
    log: Bool = False

    @model_validator(mode="after")
    def _check_range(self) -> Self:
        if self.low > self.high:
            raise fail(f"must be <= high (got low={self.low}, high={self.high})", "low")
        if self.log and self.low < 1:
            raise fail(f"must be >= 1 when log is true (got {self.low})", "low")
        if self.log and self.step != 1:
            raise fail(f"must be 1 when log is true (got {self.step})", "step")
        span = self.high - self.low
        if span % self.step:
            # Optuna would silently lower `high` to the last multiple; say so instead.
            raise fail(f"must divide high - low (got step={self.step}, high - low={span})", "step")
        return self

    def to_distribution(self) -> IntDistribution:
        """Return Optuna's distribution for this parameter."""
        return IntDistribution(self.low, self.high, log=self.log, step=self.step)


MAX_STEPS_IN_RANGE = 1e15
"""The most values a float parameter's ``step`` may cut its range into (keeps Optuna's arithmetic finite)."""

MAX_CHOICE_INT = 2**63
"""The largest magnitude of an integer choice: what every JSON reader of the journal and the report holds."""


def _choice(value: Any) -> CategoricalChoiceType:
    # Optuna stores choices in its journal as JSON, hence only JSON scalars; a choice is found
    # again by equality, which NaN never satisfies.
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise fail(f"must be a string, number, boolean or null (got {show(value)})")
    if isinstance(value, float) and not math.isfinite(value):
        raise fail(f"must be a finite number (got {show(value)})")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CHOICE_INT:
        raise fail(f"must be an integer from {-MAX_CHOICE_INT} to {MAX_CHOICE_INT} (got {show(value)})")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise fail(f"must be at most {MAX_TEXT} characters (got {len(value)}: {show(value)})")
    return value


class CategoricalParam(ConfigModel):
    """One of a list of values, like ``trial.suggest_categorical(name, choices)``."""

    type: Literal["categorical"] = "categorical"
    choices: Annotated[
        tuple[CategoricalChoiceType, ...],
        PlainValidator(list_of(_choice, min_items=1, max_items=MAX_ITEMS, what="choice")),
        # Serialize as a plain list: the trial spec carries it as JSON.
        PlainSerializer(list, return_type=list),
    ]

    def to_distribution(self) -> CategoricalDistribution:
        """Return Optuna's distribution for this parameter."""
        return CategoricalDistribution(list(self.choices))


PARAM_TYPES = ("float", "int", "categorical")

# People coming from Optuna 2's suggest_* names write these.
_OLD_NAMES = {
    "uniform": "; use type: float",
    "loguniform": "; use type: float with log: true",
    "discrete_uniform": "; use type: float with step",
    "int_uniform": "; use type: int",
    "int_loguniform": "; use type: int with log: true",
    "choice": "; did you mean 'categorical'?",
}

Param = Annotated[
    FloatParam | IntParam | CategoricalParam,
    Field(discriminator="type"),
    tagged("type", PARAM_TYPES, what="parameter type", hints=_OLD_NAMES),
]
"""One search-space parameter, chosen by its ``type``."""


SEARCH_SPACE_FUNCTION = "search_space"
"""The function an objective module defines to declare its study's space in Python."""


def objective_module_file(folder: Path, objective: str) -> Path:
    """The file of objective ``module`` (or ``module:function``) in ``folder``: ``<module>.py`` or its package."""
    module = objective.partition(":")[0]
    package = folder / module / "__init__.py"
    return package if package.is_file() and not (folder / f"{module}.py").is_file() else folder / f"{module}.py"


def module_search_space(path: Path) -> bool:
    """True if the module at ``path`` binds ``search_space`` at its top level (a def, an assignment, an import).

    The source is parsed, not imported: loading studies.yaml runs no objective code.

    Raises:
        OSError: The file cannot be read.
        SyntaxError: It is not valid Python.
    """
    tree = ast.parse(path.read_bytes(), filename=str(path))
    return SEARCH_SPACE_FUNCTION in _top_level_names(tree.body)


def _top_level_names(body: list[ast.stmt]) -> set[str]:
    """The names a module's statements bind, looking into top-level ``if``/``try``/``with`` blocks."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for block in ("body", "orelse", "finalbody"):
                names |= _top_level_names(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                names |= _top_level_names(handler.body)
    return names
