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


def placeholder_problem(path: str | os.PathLike[str], name: str) -> str | None:
    """The one-line message naming the key of study ``name`` that still holds a placeholder, or None.

    Raises:
        ConfigError: The file is missing or malformed, or the study is unknown.
    """
    document = _read(path)
    if name not in document.studies:
        raise ConfigError(unknown_study(document.shown, name, [str(n) for n in document.studies]))
    try:
        _refuse_placeholders(document, name)
    except ConfigError as exc:
        return str(exc)
    return None


def load_study_template(path: str | os.PathLike[str], name: str) -> StudyConfig:
    """Load and validate one study like :func:`load_study`, letting placeholders pass (``hpo check`` names them)."""
    document = _read(path)
    if name not in document.studies:
        raise ConfigError(unknown_study(document.shown, name, [str(n) for n in document.studies]))
    return _validate(document, name)


def load_study(path: str | os.PathLike[str], name: str) -> StudyConfig:
    """Load and validate one study of a studies.yaml, leaving the others unchecked.

    Other studies may be mid-edit while this one runs; only the file's YAML
    syntax and top-level shape must be sound for this study to load.

    This is the study a command is about to use, so a value the user still has
    to fill in (``volume.id: your-volume-id``, ``image: ghcr.io/<you>/...``) is
    refused here, naming the key, instead of failing a minute later against
    RunPod. :func:`load_studies` checks the file and lets such values pass: the
    shipped studies.yaml holds a study that is a template on purpose.

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
    _refuse_placeholders(document, name)
    return _validate(document, name)


def study_document(path: str | os.PathLike[str], name: str) -> dict[Any, Any]:
    """Study ``name`` as written, with the file's ``defaults`` merged under it: what :func:`load_study` validates.

    For a copy of one study that must load the same elsewhere (``hpo run
    --remote`` ships it to its controller's pod). Validate it first with
    :func:`load_study`; this only reads.

    Raises:
        ConfigError: The file is missing or malformed, or the study is unknown.
    """
    document = _read(path)
    if name not in document.studies:
        raise ConfigError(unknown_study(document.shown, name, [str(n) for n in document.studies]))
    raw = document.studies[name]
    return deep_merge(document.defaults, raw) if isinstance(raw, dict) else raw


@dataclass(frozen=True)
class _Document:
    """A parsed studies.yaml whose top level has been checked, studies not yet."""

    shown: str
    """The file's name as the caller gave it, for messages."""
    source: Path
    studies: dict[Any, Any]
    defaults: dict[Any, Any]


MAX_FILE_BYTES = 1024 * 1024
"""The largest studies.yaml read: a real one is a few KB; a bigger file is the wrong file or an attack."""

MAX_VALUES = 100_000
"""The most YAML values (scalars, lists, mappings) a document may hold once its aliases are expanded.

A few studies hold hundreds; an alias bomb ("billion laughs") holds billions in a
few lines, and every step after parsing (merging defaults, validating, rendering a
message) walks the expanded values.
"""

MAX_DEPTH = 32
"""The deepest nesting a document may have, aliases expanded; a study needs about 7 levels."""


class _LimitError(yaml.MarkedYAMLError):
    """The document is beyond :data:`MAX_VALUES` or :data:`MAX_DEPTH`, found before it is built."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a bounded document, and a repeated key as an error.

    A repeated key: two studies under one name, or ``lr`` declared twice, would
    otherwise leave only the last one, with no hint that the first was ignored.

    Bounds: the node graph is checked after composing and before any Python
    object is built, so neither deep nesting (PyYAML composes recursively) nor
    aliases that expand to billions of values get further than a count.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Compose one node, refusing nesting beyond :data:`MAX_DEPTH` before Python's recursion limit."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _LimitError(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=mark)
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        """Compose the document and check its expanded size and depth before it is built."""
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node, aliased=self._aliases > 0)
        return node


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


MAX_INT_CHARS = 100
"""The longest integer written in studies.yaml: every bounded key takes at most 20 digits.

Longer ones are refused before conversion: Python refuses more than 4300
digits, and PyYAML converts a sexagesimal ``1:59:59:...`` in quadratic time.
"""


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> Any:
    """PyYAML's integer, but one over :data:`MAX_INT_CHARS` characters is a marked YAML error."""
    written = str(node.value)
    too_large = yaml.constructor.ConstructorError(
        None, None, f"an integer of {len(written)} characters is too large (at most {MAX_INT_CHARS})", node.start_mark
    )
    if len(written) > MAX_INT_CHARS:
        raise too_large
    try:
        return loader.construct_yaml_int(node)
    except ValueError:
        raise too_large from None


def _construct_timestamp(loader: _StrictLoader, node: yaml.ScalarNode) -> Any:
    """PyYAML's date, but an impossible one (``2024-02-30``) is a marked YAML error."""
    try:
        return loader.construct_yaml_timestamp(node)
    except (ValueError, OverflowError) as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"invalid date {str(node.value)[:40]!r}: {exc}", node.start_mark
        ) from None


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _check_expansion(root: yaml.Node, *, aliased: bool = True) -> None:
    """Refuse a node graph that expands beyond :data:`MAX_VALUES` values or :data:`MAX_DEPTH` levels.

    An alias is the same node object as its anchor, so each node's expanded size
    and depth are computed once (memoised by identity): the check costs one visit
    per written node, however many times aliases repeat them. A node that
    contains itself (``&a [*a]``) has no finite expansion and is refused too.
    """
    sizes: dict[int, tuple[int, int]] = {}
    in_progress: set[int] = set()
    # Iterative post-order walk: a recursive one would itself hit Python's recursion limit.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if not children_done:
            if key in in_progress:
                continue  # already waiting for its children further down the stack
            in_progress.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in in_progress and id(child) not in sizes:
                    raise _LimitError(
                        problem="an alias refers to the list or mapping that contains it "
                        "(a recursive alias); write the values out",
                        problem_mark=child.start_mark,
                    )
                if id(child) not in sizes:
                    stack.append((child, False))
            continue
        size = 1 + sum(sizes[id(child)][0] for child in children)
        depth = 1 + max((sizes[id(child)][1] for child in children), default=0)
        if size > MAX_VALUES:
            problem = (
                f"more than {MAX_VALUES} values once YAML aliases (*name) are expanded "
                "(an alias bomb?); write the values out"
                if aliased
                else f"more than {MAX_VALUES} values; a studies file needs a few hundred"
            )
            raise _LimitError(problem=problem, problem_mark=node.start_mark)
        if depth > MAX_DEPTH:
            # Without aliases, compose_node has refused this already.
            raise _LimitError(
                problem=f"nested deeper than {MAX_DEPTH} levels once YAML aliases (*name) are expanded",
                problem_mark=node.start_mark,
            )
        sizes[key] = (size, depth)
        in_progress.discard(key)


def _children(node: yaml.Node) -> list[yaml.Node]:
    """A node's direct children: items of a sequence, keys and values of a mapping."""
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _read(path: str | os.PathLike[str]) -> _Document:
    """Parse the file and check its top level: ``studies`` (required) and ``defaults``."""
    shown = os.fspath(path)
    try:
        text = _read_text(Path(path), shown)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except _LimitError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        raise ConfigError(f"{shown}:{where} {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = exc.problem or exc.context or "unreadable"
        raise ConfigError(f"{shown}:{where} invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: invalid YAML: {_one_line(str(exc))}") from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # PyYAML's constructors let these through: an integer of more than 4300
        # digits, a date such as 2024-02-30.
        raise ConfigError(f"{shown}: invalid YAML: {_one_line(str(exc))[:200]}") from None

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


def _read_text(path: Path, shown: str) -> str:
    """The file's text, refused beyond :data:`MAX_FILE_BYTES` before it is parsed.

    At most one byte more than the limit is read, so a huge file (or an endless
    one such as ``/dev/zero``) costs no more than a small one.
    """
    with path.open("rb") as stream:
        data = stream.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        # A special file (a pipe, /dev/zero) has no size to tell.
        told = f"{size:,} bytes" if size > MAX_FILE_BYTES else f"over {MAX_FILE_BYTES:,} bytes"
        raise ConfigError(
            f"{shown}: the file is {told}; a studies file may be at most "
            f"{MAX_FILE_BYTES:,} bytes (1 MiB): is it the right file?"
        )
    return data.decode("utf-8")


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


_PLACEHOLDER = re.compile(
    r"<[^<>]*>"  # <you>, <volume id>
    r"|(?<![a-z0-9])your[-_]"  # your-volume-id, YOUR_BUCKET
    r"|change[-_]?me"
    r"|(?<![a-z0-9])x{3,}(?![a-z0-9])"  # xxxx
    r"|(?<![a-z0-9-])example\.(?:com|org|net)(?![a-z0-9-])"  # RFC 2606 names: they never resolve
    r"|\.example(?![a-z0-9.-])",
    re.IGNORECASE,
)
"""What the examples (README, the shipped studies.yaml) write where the user must put their own value."""

_EXAMPLE_WORD = re.compile(r"(?<![a-z])example(?![a-z])", re.IGNORECASE)
"""``example`` as a word in a volume id (``example-volume``): no real id is a word."""

_FILL_IN: dict[tuple[str, ...], str] = {
    ("compute", "image"): "the trial image you built and pushed (docker/README.md)",
    ("volume", "id"): "your RunPod network volume's id (RunPod console: Storage)",
    ("volume", "endpoint"): "your volume's S3 endpoint, or leave the key out to use RunPod's",
    ("storage",): "your database's URL, or leave the key out to keep the journal on the volume",
}
"""The keys a user must fill in with their own value, and what goes there."""


def _refuse_placeholders(document: _Document, name: Any) -> None:
    """Refuse a study whose keys in :data:`_FILL_IN` still hold an example's placeholder.

    Checked on the study as written (defaults merged), before validation: a
    placeholder such as ``<volume id>`` is also an invalid id, and "still holds
    the placeholder" is the message that says what to do.

    Raises:
        ConfigError: ``studies.yaml: study 'f5-lr': key 'volume.id': still holds the
            placeholder 'your-volume-id'; replace it with your RunPod network volume's id ...``
    """
    raw = document.studies[name]
    if not isinstance(raw, dict) or check_study_name(name) is not None:
        return  # validation says what is wrong with it
    merged = deep_merge(document.defaults, raw)
    for parts, what in _FILL_IN.items():
        value: Any = merged
        for part in parts:
            value = value.get(part) if isinstance(value, Mapping) else None
        if not isinstance(value, str):
            continue
        found = _PLACEHOLDER.search(value)
        if found is None and parts == ("volume", "id"):
            found = _EXAMPLE_WORD.search(value)
        if found is None:
            continue
        shown_value = _redact_url(value) if parts == ("storage",) else value
        message = (
            f"{document.shown}: study {name!r}: key {dotted(parts)!r}: still holds the placeholder "
            f"{show(shown_value)}; replace it with {what}"
        )
        keys: list[str | int] = list(parts)
        if _depth(document.defaults, keys) == len(keys) > _depth(raw, keys):
            message += " (set in 'defaults')"
        raise ConfigError(message)


def _redact_url(url: str) -> str:
    """Hide a password in a database URL before it appears in a message."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


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
