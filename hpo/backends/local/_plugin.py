"""The ``local`` backend as the rest of runpod-hpo uses it: built from a study, its workers shown by pid."""

from __future__ import annotations

from pathlib import Path

from hpo.backends._plugin import BackendPlugin
from hpo.backends.local._backend import LocalBackend
from hpo.backends.local._config import LocalCompute, LocalVolume
from hpo.config import StudyConfig
from hpo.records import LaunchRecord
from hpo.volume import Volume
from hpo.workers import WorkerHandle


def build(config: StudyConfig, volume: Volume, *, cache_dir: Path | None = None) -> LocalBackend:
    """Local processes for the study (nothing to cache: they cost nothing)."""
    return LocalBackend(config.name, volume)


def describe_worker(launch: LaunchRecord, handle: WorkerHandle | None, *, listed: bool) -> str | None:
    """``pid 4242``: the process recorded at launch, else the one listed (a warm worker's, with its index)."""
    pid = launch.pid if launch.pid is not None else (handle.detail.get("pid") if handle is not None else None)
    if pid is None:
        return None
    return f"pid {pid}" if launch.worker is None else f"pid {pid} (warm worker w{launch.worker})"


PLUGIN = BackendPlugin(
    name="local",
    compute=LocalCompute,
    volume=LocalVolume,
    build=build,
    describe_worker=describe_worker,
)
"""No worker hook: a local worker is a plain process, whose output the backend already sends to the attempt's log."""
