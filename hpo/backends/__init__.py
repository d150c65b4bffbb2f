"""Backends run a trial's attempts: ``local`` (subprocesses) and ``runpod`` (pods), one folder each.

Offers the interface every backend implements (:class:`Backend`, with
:class:`LaunchRate`), the words it shares with the rest of runpod-hpo
(:class:`AttemptRef`, :class:`WorkerHandle`, :class:`Billing`, defined in
:mod:`hpo.workers`), and the registry: :data:`BACKENDS` names each backend's
package, whose :class:`BackendPlugin` says how to configure, build and show
it and what its workers do inside (:class:`WorkerHook`); look them up with
:func:`backend_plugin` and :func:`worker_hook`. How to add a backend:
``hpo/backends/README.md``.
"""

from __future__ import annotations

from hpo.backends._base import Backend, LaunchRate
from hpo.backends._plugin import BackendPlugin, BuildBackend, DescribeWorker, WorkerHook
from hpo.backends._registry import (
    BACKENDS,
    DEFAULT_BACKEND,
    backend_plugin,
    backend_plugins,
    compute_models,
    config_models,
    find_plugin,
    volume_models,
    worker_hook,
)
from hpo.backends.local import LocalBackend
from hpo.workers import AttemptRef, Billing, WorkerHandle

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "AttemptRef",
    "Backend",
    "BackendPlugin",
    "Billing",
    "BuildBackend",
    "DescribeWorker",
    "LaunchRate",
    "LocalBackend",
    "WorkerHandle",
    "WorkerHook",
    "backend_plugin",
    "backend_plugins",
    "compute_models",
    "config_models",
    "find_plugin",
    "volume_models",
    "worker_hook",
]
