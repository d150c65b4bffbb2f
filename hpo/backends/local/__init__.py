"""The ``local`` backend: each attempt is a subprocess of this machine running ``python -m hpo.agent``.

Offers :class:`LocalBackend` (launch, list, terminate), the environment its
workers get (:func:`worker_env`; a warm worker's: :func:`pool_worker_env`), its keys in studies.yaml
(:class:`LocalCompute`, and :class:`LocalVolume`: a folder standing in for the
network volume), and ``PLUGIN``, what the registry knows of it.
"""

from __future__ import annotations

from hpo.backends.local._backend import LocalBackend, pool_worker_env, worker_env
from hpo.backends.local._config import LocalCompute, LocalVolume
from hpo.backends.local._plugin import PLUGIN

__all__ = ["PLUGIN", "LocalBackend", "LocalCompute", "LocalVolume", "pool_worker_env", "worker_env"]
