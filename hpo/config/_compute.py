"""Where trials run (``compute``) and where their files live (``volume``): the slots a backend fills.

Each backend brings its own models, beside its code (``hpo/backends/<name>/_config.py``):
a :class:`ComputeConfig` that ``compute.backend: <name>`` picks, and maybe a
:class:`VolumeConfig` that a volume's keys pick (``path``: a local folder,
``id``: a RunPod network volume). A study's two blocks are validated by the
model the backends' registry names, with the same one-line messages as any
other key (``compute.gpu_types[1]: unknown GPU type ...``).

The backends build on this package (their models on these base classes, their
builders on :class:`~hpo.config.StudyConfig`), so this package never imports
them when it is imported: the registry is asked when a study is validated.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar, cast

from pydantic import PlainValidator, ValidationError, ValidationInfo

from hpo.config._base import ConfigModel, tagged
from hpo.config._messages import describe, fail, show

if TYPE_CHECKING:
    from hpo.volume import Volume as OpenVolume


class ComputeConfig(ConfigModel):
    """Where trials run: the base of every backend's ``compute`` model, picked by ``backend``.

    A backend's model narrows ``backend`` to a literal of its own name, may set
    the class attributes below, and may refuse a volume it cannot use
    (:meth:`check_volume`).
    """

    backend: str

    default_poll_interval: ClassVar[float] = 1.0
    """Seconds between polls when the study does not say (a rate-limited API wants more)."""

    volume_required: ClassVar[str | None] = None
    """Why a study on this backend must name its volume; None: the default folder (``storage``) will do."""

    def check_volume(self, volume: VolumeConfig) -> None:
        """Refuse a volume this compute cannot use, by raising :func:`fail` at ``volume``; any will do here."""


class VolumeConfig(ConfigModel):
    """Where a study's files live: the base of every volume model, picked by the keys given.

    Two kinds' :attr:`kind_key` in one mapping are refused; otherwise the
    first model, after the default backend's, that shares a key with the
    mapping is the one (``data_center`` alone means a RunPod volume), and
    failing that the default backend's.
    """

    kind_key: ClassVar[str]
    """The key that names this kind of volume (``path``, ``id``)."""

    kind_text: ClassVar[str]
    """What this kind is, for messages (``a local folder``)."""

    example: ClassVar[str]
    """Its shortest valid shape, for messages (``{path: <folder>}``)."""

    def shown(self) -> str:
        """The volume in a message: its kind's key and value (``path '/data/hpo'``)."""
        return f"{self.kind_key} {str(getattr(self, self.kind_key))!r}"

    def open(self) -> OpenVolume:
        """The volume as this machine reaches it (a folder, or an object store)."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to open it")


def folder_path(value: Any, info: ValidationInfo) -> Path:
    """A folder path, relative ones taken from the directory holding studies.yaml."""
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 4096 or "\0" in value:
        raise fail(f"must be a folder path (got {show(value)})")
    path = Path(value).expanduser()
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir")
        path = Path(base or Path.cwd()) / path
    # abspath, not resolve(): normalise ".." without following symlinks.
    return Path(os.path.abspath(path))


def _backends() -> ModuleType:
    """The backends' registry (:mod:`hpo.backends`), imported when a study is validated, not before.

    The backends import this package; by the time a study is validated both
    are loaded, so asking then closes no cycle.
    """
    import hpo.backends

    return hpo.backends


def compute_model(name: Any) -> type[ComputeConfig] | None:
    """The compute model of the backend named ``name``, or None for a name no backend has."""
    models: dict[str, type[ComputeConfig]] = _backends().compute_models()
    return models.get(name) if isinstance(name, str) else None


def default_backend() -> str:
    """The backend a study without ``compute`` runs on."""
    return cast(str, _backends().DEFAULT_BACKEND)


M = TypeVar("M", bound=ConfigModel)


def validate_as(model: type[M], value: Any, info: ValidationInfo) -> M:
    """Validate ``value`` as ``model``, its first error raised again as ours (key path kept, wording final).

    Only the first error is kept: the loader reports only that one, since
    later ones are often its consequences.
    """
    try:
        return model.model_validate(value, context=info.context)
    except ValidationError as exc:
        parts, message = describe(exc.errors()[0], {})
        raise fail(message, *parts) from None


def _compute(value: Any, info: ValidationInfo) -> ComputeConfig:
    if isinstance(value, ComputeConfig):
        return value
    models: dict[str, type[ComputeConfig]] = _backends().compute_models()
    check = cast(
        Callable[[Any], Any],
        tagged("backend", models, what="backend", default=default_backend(), shorthand=True).func,
    )
    value = check(value)
    return validate_as(models[value["backend"]], value, info)


def _volume(value: Any, info: ValidationInfo) -> VolumeConfig:
    if isinstance(value, VolumeConfig):
        return value
    models: list[type[VolumeConfig]] = _backends().volume_models()
    if not isinstance(value, Mapping):
        raise fail(f"must be a mapping: {' or '.join(m.example for m in models)} (got {show(value)})")
    named = [m for m in models if m.kind_key in value]
    if len(named) > 1:
        either = " or ".join(f"{m.kind_key} ({m.kind_text})" for m in named)
        raise fail(f"give either {either}, not both")
    return validate_as(_by_keys(models, value), value, info)


def _by_keys(models: list[type[VolumeConfig]], value: Mapping[Any, Any]) -> type[VolumeConfig]:
    """The first model other than the default that shares a key with ``value``, else the default (first)."""
    for model in models[1:]:
        if not set(model.model_fields).isdisjoint(value):
            return model
    return models[0]


Compute = Annotated[ComputeConfig, PlainValidator(_compute)]
"""Where trials run: the model of the backend ``backend`` names (default ``local``; a bare name is shorthand)."""

Volume = Annotated[VolumeConfig, PlainValidator(_volume)]
"""The volume: the model its keys pick (``path``: a local folder, ``id``: a RunPod network volume)."""
