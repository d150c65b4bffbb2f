"""The building blocks of the config models: a strict base model and checked scalars.

Pydantic's lax mode would read ``trials: "24"`` or ``log: "yes"`` as valid and
word its refusals for Python programmers. These types accept only what YAML
writes for them and fail with one short sentence that includes the value
received, so the message needs no translation later.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from hpo.config._messages import fail, hint, show


class ConfigModel(BaseModel):
    """Base of every config model: frozen, no unknown keys, typos answered with a suggestion.

    ``extra='forbid'`` alone would report an unknown key after every missing
    one (a typo ``trails`` also makes ``trials`` missing); checking keys first
    reports the cause, with the nearest field name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    _internal_keys: ClassVar[frozenset[str]] = frozenset()
    """Fields the loader fills in, which studies.yaml may not set."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            keys = [name for name in cls.model_fields if name not in cls._internal_keys]
            for key in data:
                if key not in cls.model_fields:
                    shown = key if isinstance(key, str) else show(key)
                    raise fail("unknown key" + hint(key, keys, listing="valid keys:"), shown)
        return data


def _checked(check: Callable[[Any], Any]) -> PlainValidator:
    """Wrap a check so pydantic runs it instead of its own coercion."""
    return PlainValidator(check)


def _num(value: float) -> str:
    """A bound as a person writes it: ``86400``, ``10000000``, ``0.5``, ``1e+18``."""
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e16):
        return str(int(value))
    return f"{value:g}"


def _range_text(noun: str, ge: float | None, le: float | None, gt: float | None = None) -> str:
    """Say what a bounded number must be: ``an integer >= 1``, ``a number from 0 to 100``."""
    if ge is not None and le is not None:
        return f"{noun} from {_num(ge)} to {_num(le)}"
    if gt is not None and le is not None:
        return f"{noun} > {_num(gt)} and <= {_num(le)}"
    if ge is not None:
        return f"{noun} >= {_num(ge)}"
    if gt is not None:
        return f"{noun} > {_num(gt)}"
    if le is not None:
        return f"{noun} <= {_num(le)}"
    return noun


def integer(ge: int | None = None, le: int | None = None) -> Callable[[Any], int]:
    """Check for an integer in range; booleans and floats such as ``2.0`` are refused.

    YAML's ``true`` is a Python ``int``; accepting it as 1 would hide a
    misplaced value, so it is refused like any other non-integer.
    """
    wanted = _range_text("an integer", ge, le)

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"must be {wanted} (got {show(value)})")
        if (ge is not None and value < ge) or (le is not None and value > le):
            raise fail(f"must be {wanted} (got {show(value)})")
        return value

    return check


def number(
    ge: float | None = None, le: float | None = None, gt: float | None = None
) -> Callable[[Any], float]:
    """Check for a finite number in range (an integer is accepted and made a float)."""
    wanted = _range_text("a number", ge, le, gt)

    def check(value: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise fail(f"must be {wanted} (got {show(value)})")
        if (
            (ge is not None and value < ge)
            or (le is not None and value > le)
            or (gt is not None and value <= gt)
        ):
            raise fail(f"must be {wanted} (got {show(value)})")
        return float(value)

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(f"must be true or false (got {show(value)})")
    return value


MAX_TEXT = 200
"""The longest free-text value (a metric's name, a step's unit): it goes into every trial's record."""

MAX_TOKEN = 500
"""The longest single-word value (an image reference: Docker allows 255 for the name, 128 for the tag)."""


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(f"must be a non-empty string (got {show(value)})")
    if len(value) > MAX_TEXT:
        raise fail(f"must be at most {MAX_TEXT} characters (got {len(value)}: {show(value)})")
    return value


def _token(value: Any) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise fail(f"must be a non-empty string without spaces (got {show(value)})")
    if len(value) > MAX_TOKEN:
        raise fail(f"must be at most {MAX_TOKEN} characters (got {len(value)}: {show(value)})")
    return value


def choice(options: Sequence[str]) -> Callable[[Any], str]:
    """Check for one of a few words, suggesting the nearest on a typo."""
    listed = ", ".join(options[:-1]) + f" or {options[-1]}" if len(options) > 1 else options[0]

    def check(value: Any) -> str:
        if value not in options:
            suggestion = hint(value, options, listing=None)
            raise fail(f"must be {listed} (got {show(value)}){suggestion}")
        return value

    return check


MAX_ITEMS = 1000
"""The longest list a key takes: far above any real one, and the duplicate check stays quick."""


def list_of(
    item: Callable[[Any], Any],
    *,
    min_items: int = 0,
    max_items: int = MAX_ITEMS,
    unique: bool = True,
    what: str = "item",
) -> Callable[[Any], tuple[Any, ...]]:
    """Check a YAML list item by item; the result is a tuple so frozen models stay immutable.

    An item's error names its index (``gpu_types[1]``), so the user finds it
    without counting.

    Args:
        item: The check of one item, raising :func:`fail`.
        min_items: Fewest items accepted.
        unique: Refuse an item equal to an earlier one.
        what: The noun for an item in messages ("GPU type").
        max_items: Most items accepted (the duplicate check compares every pair).
    """

    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, (list, tuple)):
            raise fail(f"must be a list (got {show(value)})")
        if len(value) < min_items:
            plural = "s" if min_items > 1 else ""
            raise fail(f"must list at least {min_items} {what}{plural} (got [])")
        if len(value) > max_items:
            raise fail(f"must list at most {max_items} {what}s (got {len(value)} items)")
        items: list[Any] = []
        for index, raw in enumerate(value):
            try:
                checked = item(raw)
            except PydanticCustomError as exc:
                ctx = exc.context or {}
                message = str(ctx.get("message", exc.message()))
                raise fail(message, index, *ctx.get("at", ())) from None
            if unique:
                for earlier, seen in enumerate(items):
                    # ``==`` on purpose: Optuna finds a choice by equality, so 1 and
                    # true (or 1 and 1.0) are the same choice to it.
                    if seen == checked:
                        first = f"item [{earlier}]"
                        if show(value[earlier]) != show(raw):
                            first += f": {show(value[earlier])}"
                        raise fail(f"duplicate {what} {show(raw)} (equal to {first})", index)
            items.append(checked)
        return tuple(items)

    return check


def tagged(
    key: str,
    options: Iterable[str],
    *,
    what: str,
    default: str | None = None,
    shorthand: bool = False,
    hints: Mapping[str, str] | None = None,
) -> BeforeValidator:
    """Check the tag of a discriminated union before pydantic picks the branch.

    Pydantic reports a bad tag without the valid names in a usable form; this
    check reports ``unknown pruner 'medain'; did you mean 'median'?`` at the
    tag's key, fills a default tag, and may accept a bare string as shorthand
    (``pruner: none`` for ``pruner: {type: none}``).

    Args:
        key: The tag field (``type`` or ``backend``).
        options: The valid tags.
        what: The noun in messages ("pruner").
        default: Tag to assume when the key is absent; None makes it required.
        shorthand: Accept a bare string as the tag.
        hints: Advice for known wrong tags (Optuna's old distribution names).
    """
    options = tuple(options)
    advice = dict(hints or {})

    def check(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        if shorthand and isinstance(value, str):
            value = {key: value}
        if not isinstance(value, Mapping):
            raise fail(f"must be a mapping (got {show(value)})")
        if key not in value:
            if default is None:
                raise fail("required key missing", key)
            value = {key: default, **value}
        tag = value[key]
        if tag not in options:
            extra = advice.get(tag) if isinstance(tag, str) else None
            raise fail(f"unknown {what} {show(tag)}" + (extra or hint(tag, options)), key)
        return value

    return BeforeValidator(check)


MAX_TRIALS = 1_000_000
"""The most trials any count of trials may name (a study of a million trials is already absurd)."""

MAX_STEPS = 1_000_000_000
"""The most steps any count of steps may name (a billion updates)."""

MAX_PARAM = 1e18
"""The largest magnitude of a float parameter's bound: far beyond any hyperparameter, and
``high - low`` and Optuna's arithmetic on it stay finite."""

MAX_INT_PARAM = 2**53
"""The largest magnitude of an integer parameter's bound: Optuna keeps parameters as floats
internally, which hold every integer up to 2**53 exactly."""

Bool = Annotated[bool, _checked(_boolean)]
Text = Annotated[str, _checked(_text)]
Token = Annotated[str, _checked(_token)]
TrialCount = Annotated[int, _checked(integer(ge=1, le=MAX_TRIALS))]
"""A number of trials, at least 1."""
TrialCount0 = Annotated[int, _checked(integer(ge=0, le=MAX_TRIALS))]
"""A number of trials, possibly 0."""
StepCount = Annotated[int, _checked(integer(ge=1, le=MAX_STEPS))]
"""A number of steps, at least 1."""
StepCount0 = Annotated[int, _checked(integer(ge=0, le=MAX_STEPS))]
"""A number of steps, possibly 0."""
ParamNumber = Annotated[float, _checked(number(ge=-MAX_PARAM, le=MAX_PARAM))]
"""A float parameter's bound."""
ParamStep = Annotated[float, _checked(number(gt=0, le=MAX_PARAM))]
"""A float parameter's step."""
ParamInt = Annotated[int, _checked(integer(ge=-MAX_INT_PARAM, le=MAX_INT_PARAM))]
"""An integer parameter's bound."""
ParamIntStep = Annotated[int, _checked(integer(ge=1, le=MAX_INT_PARAM))]
"""An integer parameter's step."""
