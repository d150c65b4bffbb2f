"""The backends, by name: the one place a backend is registered.

Each entry maps the name ``compute.backend`` takes to the package of that
backend (``hpo/backends/<name>/``), whose ``PLUGIN`` (a
:class:`~hpo.backends.BackendPlugin`) says everything else: its config
models, how to build it, what ``hpo status`` shows of its workers, what the
agent does inside them. A package is imported on first use, so the config
(which the backends build on) can ask for their models when a study is
validated without importing them when it is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from hpo.backends._plugin import BackendPlugin, WorkerHook
from hpo.config import ComputeConfig, ConfigModel, VolumeConfig

BACKENDS: Final[Mapping[str, str]] = MappingProxyType({
    "local": "hpo.backends.local",  # subprocesses on this machine
    "runpod": "hpo.backends.runpod",  # RunPod (spot) pods
})  # fmt: skip
"""Backend name -> the package that defines its ``PLUGIN``."""

DEFAULT_BACKEND: Final = "local"
"""The backend of a study without ``compute``; its volume model is the default kind of volume."""


def backend_plugin(name: str) -> BackendPlugin:
    """The plug-in of the backend registered as ``name``.

    Raises:
        KeyError: No backend has that name (studies.yaml's validation refuses
            such a name first, with a suggestion).
    """
    plugin = importlib.import_module(BACKENDS[name]).PLUGIN
    if not isinstance(plugin, BackendPlugin) or plugin.name != name:
        raise TypeError(f"{BACKENDS[name]}.PLUGIN is not the BackendPlugin of backend {name!r}")
    return plugin


def find_plugin(name: object) -> BackendPlugin | None:
    """The plug-in of ``name`` if a backend has that name, else None (for names read from the volume)."""
    return backend_plugin(name) if isinstance(name, str) and name in BACKENDS else None


def backend_plugins() -> list[BackendPlugin]:
    """Every backend's plug-in, the default backend's first, then in registry order."""
    names = [DEFAULT_BACKEND, *(name for name in BACKENDS if name != DEFAULT_BACKEND)]
    return [backend_plugin(name) for name in names]


def compute_models() -> dict[str, type[ComputeConfig]]:
    """Each backend's ``compute`` model, by backend name (the default backend's first)."""
    return {plugin.name: plugin.compute for plugin in backend_plugins()}


def volume_models() -> list[type[VolumeConfig]]:
    """Every kind of volume the backends bring, the default backend's first."""
    return [plugin.volume for plugin in backend_plugins() if plugin.volume is not None]


def config_models() -> dict[str, type[ConfigModel]]:
    """Every backend's config models by class name (``RunPodCompute``)."""
    models: list[type[ConfigModel]] = [*compute_models().values(), *volume_models()]
    return {model.__name__: model for model in models}


def worker_hook(env: Mapping[str, str]) -> WorkerHook | None:
    """The hook of the backend whose worker this process is (by ``env``), or None: a plain process."""
    for plugin in backend_plugins():
        if plugin.worker_hook is not None and plugin.worker_hook.applies(env):
            return plugin.worker_hook
    return None
