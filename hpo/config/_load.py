"""Read studies.yaml into validated :class:`StudyConfig` objects.

Every failure becomes one :class:`~hpo.errors.ConfigError` in one line, naming
the file as the caller gave it, the study, and the dotted key at fault::

    studies.yaml: study 'demo': key 'pruner.type': unknown pruner 'medain'; did you mean 'median'?
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hpo.config._messages import describe, dotted, hint, kind_of, show, unknown_study
from hpo.config._schema import TAGGED_AT, StudiesFile, StudyConfig, check_study_name
from hpo.errors import ConfigError

TOP_LEVEL_KEYS = ("studies", "defaults")


def load_studies(path: str | os.PathLike[str]) -> StudiesFile:
    """Load and validate every study of a studies.yaml.

    Args:
        path: The file; messages name it as given here.

    Returns:
        The studies, in the file's order.

    Raises:
        ConfigError: The file is missing or malformed, or any study is invalid
            (the first error found, in file order).
    """
    document = _read(path)
    studies = {name: _validate(document, name) for name in document.studies}
    return StudiesFile(path=Path(path), studies=studies)


def load_study(path: str | os.PathLike[str], name: str) -> StudyConfig:
    """Load and validate one study of a studies.yaml, leaving the others unchecked.

    Other studies may be mid-edit while this one runs; only the file's YAML
    syntax and top-level shape must be sound for this study to load.

    Args:
        path: The file; messages name it as given here.
        name: The study's key under ``studies``.

    Raises:
        ConfigError: The file is missing or malformed, the study is unknown
            (the message suggests the nearest name), or the study is invalid.
    """
    document = _read(path)
    if name not in document.studies:
        raise ConfigError(unknown_study(document.shown, name, [str(n) for n in document.studies]))
    return _validate(document, name)


@dataclass(frozen=True)
class _Document:
    """A parsed studies.yaml whose top level has been checked, studies not yet."""

    shown: str
    """The file's name as the caller gave it, for messages."""
    source: Path
    studies: dict[Any, Any]
    defaults: dict[Any, Any]


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a repeated key is an error instead of a silent overwrite.

    Two studies under one name, or ``lr`` declared twice, would otherwise leave
    only the last one, with no hint that the first was ignored.
    """


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # keys from a `<<: *anchor` merge may be overridden, that is their purpose
        key = loader.construct_object(key_node, deep=deep)
        try:
            repeated = key in seen
            seen.add(key)
        except TypeError:
            continue  # an unhashable key: PyYAML's own constructor reports it
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {show(key)}", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read(path: str | os.PathLike[str]) -> _Document:
    """Parse the file and check its top level: ``studies`` (required) and ``defaults``."""
    shown = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = exc.problem or exc.context or "unreadable"
        raise ConfigError(f"{shown}:{where} invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: invalid YAML: {_one_line(str(exc))}") from None

    if data is None:
        raise ConfigError(f"{shown}: the file is empty; expected a mapping with a 'studies' key")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{shown}: the top level must be a mapping with a 'studies' key (got {kind_of(data)})"
        )
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"{shown}: key {str(key)!r}: unknown top-level key"
                + hint(key, TOP_LEVEL_KEYS, listing="valid keys:")
            )
    if "studies" not in data:
        raise ConfigError(f"{shown}: key 'studies': required key missing")
    studies = data["studies"]
    if not isinstance(studies, dict):
        raise ConfigError(
            f"{shown}: key 'studies': must be a mapping of study name to study "
            f"(got {kind_of(studies)})"
        )
    if not studies:
        raise ConfigError(f"{shown}: key 'studies': no studies defined")
    defaults = data.get("defaults")
    if defaults is None:
        defaults = {}
    if not isinstance(defaults, dict):
        raise ConfigError(
            f"{shown}: key 'defaults': must be a mapping of keys shared by every study "
            f"(got {kind_of(defaults)})"
        )
    source = Path(os.path.abspath(Path(path).expanduser()))
    return _Document(shown=shown, source=source, studies=studies, defaults=defaults)


def _validate(document: _Document, name: Any) -> StudyConfig:
    """Merge the defaults under one study and validate it, translating the first error."""
    shown = document.shown
    problem = check_study_name(name)
    if problem is not None:
        raise ConfigError(f"{shown}: study {show(name)}: {problem}")
    raw = document.studies[name]
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{shown}: study {name!r}: must be a mapping of keys (got {show(raw)})"
        )
    merged = deep_merge(document.defaults, raw)
    context = {"name": name, "source": document.source, "base_dir": document.source.parent}
    try:
        return StudyConfig.model_validate(merged, context=context)
    except ValidationError as exc:
        # Only the first error: later ones are often consequences of it.
        parts, message = describe(exc.errors()[0], TAGGED_AT)
        if parts and _depth(document.defaults, parts) == len(parts) > _depth(raw, parts):
            message += " (set in 'defaults')"
        prefix = f"{shown}: study {name!r}: " + (f"key {dotted(parts)!r}: " if parts else "")
        raise ConfigError(_one_line(prefix + message)) from None


def deep_merge(base: Mapping[Any, Any], override: Mapping[Any, Any]) -> dict[Any, Any]:
    """Merge ``override`` over ``base``: mappings merge key by key, anything else is replaced.

    Lists are replaced, not concatenated: a study naming its own ``gpu_types``
    means exactly those.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _depth(tree: Any, parts: list[str | int]) -> int:
    """Count the key parts that can be followed down ``tree`` (where did a value come from?)."""
    depth = 0
    for part in parts:
        if isinstance(tree, Mapping) and part in tree:
            tree = tree[part]
        elif isinstance(tree, list) and isinstance(part, int) and 0 <= part < len(tree):
            tree = tree[part]
        else:
            break
        depth += 1
    return depth


def _one_line(text: str) -> str:
    """Join a message's lines: the CLI prints every error as one line."""
    return re.sub(r"\s*\n\s*", " ", text).strip()
