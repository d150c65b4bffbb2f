"""Records kept in a study's system attributes under one prefix, read back as untrusted input.

The journal lies on a volume every pod can write: a record that does not parse
is skipped, never trusted and never fatal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

_R = TypeVar("_R")


def records_under(
    system_attrs: Mapping[str, Any], prefix: str, parse: Callable[[Mapping[str, Any]], _R]
) -> Iterator[tuple[str, _R]]:
    """Each attribute named ``<prefix><name>`` whose value ``parse`` accepts, as ``(name, record)``."""
    for key, value in system_attrs.items():
        if not key.startswith(prefix) or not isinstance(value, Mapping):
            continue
        try:
            record = parse(value)
        except (ValueError, KeyError, TypeError):
            continue
        yield key[len(prefix) :], record
