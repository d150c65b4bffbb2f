"""Short, human error messages for studies.yaml.

Pydantic's own messages ("Input should be a valid integer, unable to parse
string as an integer") speak about Python types and nest union branches in the
location. A user editing YAML needs the dotted key, what is wrong in YAML terms,
the value received and, for a typo, the nearest valid name. The validators in
this package raise :func:`fail` with the final wording; :func:`describe` turns
any remaining pydantic error into the same shape.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic_core import ErrorDetails, PydanticCustomError

ERROR_TYPE = "hpo"
"""The pydantic error type of every error this package raises itself."""

_MAX_SHOWN = 60


def show(value: Any) -> str:
    """Render a received value the way it reads in YAML, cut to one short line.

    The value may be huge (a 1 MB string, a list of a million items) or, through
    YAML aliases, a small document standing for billions of values: it is
    rendered piece by piece and the rendering stops as soon as the line is full,
    so the cost is bounded by the line's length, never by the value's size.

    Args:
        value: What the user wrote, as PyYAML parsed it.

    Returns:
        ``true``/``false``/``null`` for YAML's scalars, ``'text'`` for strings,
        ``repr`` otherwise; long values end in ``...``.
    """
    pieces: list[str] = []
    full = _render(value, pieces, budget=_MAX_SHOWN + 1, depth=0)
    text = "".join(pieces)
    if full and len(text) <= _MAX_SHOWN:
        return text
    return text[: _MAX_SHOWN - 3] + "..."


_MAX_DEPTH_SHOWN = 8
"""Nesting shown before ``...``: deeper levels say nothing a one-line message can use."""

_BIG_INT_BITS = 200
"""Integers with more bits are shown by their size: Python refuses to print > 4300 digits."""


def _render(value: Any, pieces: list[str], budget: int, depth: int) -> bool:
    """Append ``value``'s rendering to ``pieces`` until ``budget`` characters are written.

    Returns:
        True if the whole value was rendered, False if it was cut.
    """
    if budget <= 0:
        return False
    if value is None:
        pieces.append("null")
    elif isinstance(value, bool):
        pieces.append("true" if value else "false")
    elif isinstance(value, int) and value.bit_length() > _BIG_INT_BITS:
        if value.bit_length() <= 14_000:  # at most 4215 digits: within what str() accepts
            size = f"{len(str(abs(value)))} digits"
        else:
            size = f"about {int(value.bit_length() * 0.30103) + 1} digits"
        pieces.append(f"{'-' if value < 0 else ''}<an integer of {size}>")
    elif isinstance(value, str):
        text = repr(value[:budget])
        pieces.append(text)
        return len(value) <= budget
    elif isinstance(value, (list, tuple, dict)):
        return _render_container(value, pieces, budget, depth)
    else:
        text = repr(value)
        pieces.append(text[:budget])
        return len(text) <= budget
    return True


def _render_container(
    value: list[Any] | tuple[Any, ...] | dict[Any, Any], pieces: list[str], budget: int, depth: int
) -> bool:
    """Render a list or mapping item by item, stopping when ``budget`` runs out."""
    is_map = isinstance(value, dict)
    opening, closing = ("{", "}") if is_map else ("[", "]")
    if depth >= _MAX_DEPTH_SHOWN:
        pieces.append(opening + "..." + closing if value else opening + closing)
        return not value
    start = len(pieces)
    used = 1
    pieces.append(opening)
    items: Iterable[Any] = value.items() if isinstance(value, dict) else value
    for index, item in enumerate(items):
        if index:
            pieces.append(", ")
            used += 2
        if used >= budget:
            return False
        before = len(pieces)
        if is_map:
            key, item = item
            if isinstance(key, str):
                pieces.append(key[: budget - used])  # a key reads as YAML writes it: unquoted
                if len(key) > budget - used:
                    return False
            elif not _render(key, pieces, budget - used, depth + 1):
                return False
            pieces.append(": ")
            used += sum(len(p) for p in pieces[before:])
            before = len(pieces)
        whole = _render(item, pieces, budget - used, depth + 1)
        used += sum(len(p) for p in pieces[before:])
        if not whole:
            return False
    pieces.append(closing)
    return sum(len(p) for p in pieces[start:]) <= budget


def kind_of(value: Any, mapping: str = "a mapping") -> str:
    """Name a value's kind for "must be a mapping (got a list)" messages (never the value: it may be huge).

    ``mapping`` names a dict: YAML's word by default; RunPod's JSON says "an object".
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return mapping
    return type(value).__name__


def closest(word: Any, options: Iterable[str], *, tails: Sequence[str] = ()) -> str | None:
    """Find the valid name a typo most likely meant.

    Matching ignores case, so ``Median`` finds ``median``. With ``tails``, an
    option is also compared without each of those prefixes, so ``RTX A5000``
    finds ``NVIDIA RTX A5000``.

    Args:
        word: What the user wrote (non-strings never match).
        options: The valid names.
        tails: Prefixes an option may be written without.

    Returns:
        The best option scoring at least 0.6 (difflib's default cutoff), or None.
    """
    if not isinstance(word, str):
        return None
    wanted = word.strip().lower()
    best: tuple[float, str] | None = None
    for option in sorted(options):
        forms = [option.lower()]
        forms += [option[len(p) :].lower() for p in tails if option.startswith(p)]
        for form in forms:
            score = difflib.SequenceMatcher(None, wanted, form).ratio()
            if score >= 0.6 and (best is None or score > best[0]):
                best = (score, option)
    return best[1] if best else None


def hint(
    word: Any,
    options: Iterable[str],
    *,
    tails: Sequence[str] = (),
    listing: str | None = "choose from",
) -> str:
    """Suffix for an "unknown X" message: the nearest name, else the valid names.

    Args:
        word: What the user wrote.
        options: The valid names, in the order to list them.
        tails: Prefixes an option may be written without (see :func:`closest`).
        listing: Words before the list of valid names when nothing is close;
            None leaves the list out (for long lists).

    Returns:
        ``"; did you mean 'x'?"``, or ``"; choose from a, b"``, or ``""``.
    """
    options = list(options)
    match = closest(word, options, tails=tails)
    if match is not None:
        return f"; did you mean {match!r}?"
    if listing is not None:
        return f"; {listing} " + ", ".join(options)
    return ""


def unknown_study(file: str, name: str, known: Sequence[str]) -> str:
    """Word the refusal of a study name that is not in the file.

    Returns:
        ``"studies.yaml: unknown study 'dmeo'; did you mean 'demo'? known studies: demo, f5-lr"``.
    """
    match = closest(name, known)
    guess = f"; did you mean {match!r}?" if match is not None else ";"
    return f"{file}: unknown study {name!r}{guess} known studies: {', '.join(known)}"


def fail(message: str, *at: str | int) -> PydanticCustomError:
    """Build the error a validator raises, worded for the user.

    Args:
        message: The final wording, without file, study or key.
        *at: Key parts below the validated object that the error is about, e.g.
            ``"low"`` from a model validator of a parameter, or ``1`` for the
            second item of a list; they are appended to pydantic's location.

    Returns:
        An exception for the caller to ``raise``.
    """
    # The message travels in the context so braces in user input are not
    # mistaken for template fields.
    return PydanticCustomError(ERROR_TYPE, "{message}", {"message": message, "at": at})


def dotted(parts: Iterable[str | int]) -> str:
    """Join key parts into ``search_space.lr.low`` / ``compute.gpu_types[1]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _strip_tags(loc: tuple[str | int, ...], tagged_at: Mapping[str, int]) -> list[str | int]:
    """Drop the union-branch names pydantic inserts into an error location.

    ``('pruner', 'median', 'n_warmup_steps')`` becomes ``pruner.n_warmup_steps``:
    the branch is an implementation detail, the user wrote the key under ``pruner``.
    """
    parts = list(loc)
    if parts and isinstance(parts[0], str) and parts[0] in tagged_at:
        index = tagged_at[parts[0]]
        if len(parts) > index and parts[index] != "[key]":
            del parts[index]
    return parts


def describe(error: ErrorDetails, tagged_at: Mapping[str, int]) -> tuple[list[str | int], str]:
    """Turn one pydantic error into the user's key path and a short message.

    Args:
        error: One item of ``ValidationError.errors()``.
        tagged_at: For each top-level key holding a discriminated union, the
            position of the branch name in a location (see :func:`_strip_tags`).

    Returns:
        The key parts (for :func:`dotted`) and the message.
    """
    parts = _strip_tags(error["loc"], tagged_at)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    received = error.get("input")
    if kind == ERROR_TYPE:
        return parts + list(ctx.get("at", ())), str(ctx["message"])
    if parts and parts[-1] == "[key]":
        # A mapping key of the wrong type, e.g. an unquoted number as a name; its
        # location part is the key itself, not a list index.
        message = f"names must be strings (got {show(received)}); quote it"
        return [*parts[:-2], str(parts[-2])], message
    if kind == "missing":
        return parts, "required key missing"
    if kind in {"model_type", "model_attributes_type", "dict_type", "dataclass_type"}:
        return parts, f"must be a mapping (got {show(received)})"
    if kind in {"list_type", "tuple_type", "iterable_type"}:
        return parts, f"must be a list (got {show(received)})"
    if kind == "string_type":
        return parts, f"must be a string (got {show(received)})"
    if kind == "extra_forbidden":
        return parts, "unknown key"
    # Anything else: pydantic's wording, minus its "Value error, " prefix, plus the value.
    message = re.sub(r"^(Value|Assertion) error, ", "", error["msg"])
    return parts, f"{message[:1].lower()}{message[1:]} (got {show(received)})"
