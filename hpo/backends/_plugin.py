"""What the rest of runpod-hpo needs of one backend, in one value: its :class:`BackendPlugin`.

A backend's package (``hpo/backends/<name>/``) defines ``PLUGIN``; the
registry (:mod:`hpo.backends._registry`) finds it by the backend's name. So the
config, the controller, ``hpo status`` and the agent ask the registry instead
of naming backends, and a new backend is one folder plus one registry line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hpo.backends._base import Backend
from hpo.config import ComputeConfig, StudyConfig, VolumeConfig
from hpo.records import LaunchRecord
from hpo.volume import Volume
from hpo.workers import WorkerHandle


class BuildBackend(Protocol):
    """Make the backend of a study whose ``compute.backend`` names this one."""

    def __call__(self, config: StudyConfig, volume: Volume, *, cache_dir: Path | None = None) -> Backend:
        """``volume`` is the study's volume as this machine reaches it; ``cache_dir`` where to cache (prices)."""
        ...


class DescribeWorker(Protocol):
    """What ``hpo status`` shows of the worker of a trial's current attempt (its ``worker`` column)."""

    def __call__(self, launch: LaunchRecord, handle: WorkerHandle | None, *, listed: bool) -> str | None:
        """From its launch record, and its live handle where the backend listed it.

        ``listed`` says whether the backend could be asked at all: a worker
        missing from a listing is gone, one not asked about is just unknown.
        None: nothing to show.
        """
        ...


@dataclass(frozen=True)
class WorkerHook:
    """What the agent does differently inside one backend's workers (see :func:`~hpo.backends.worker_hook`).

    Attributes:
        applies: Whether this process runs in one of the backend's workers,
            from its environment (a RunPod pod: ``RUNPOD_POD_ID`` is set).
        end: The attempt is over: end the worker. Called instead of just
            exiting, where exiting would not end it (RunPod restarts a pod's
            container that exits); it may block until the worker is killed.
        log_to_volume: Send the agent's output to the attempt's ``log.txt`` on
            the volume, since nobody reads the worker's own output.
    """

    applies: Callable[[Mapping[str, str]], bool]
    end: Callable[[Mapping[str, str]], None]
    log_to_volume: bool = True


@dataclass(frozen=True)
class BackendPlugin:
    """One backend, as the rest of runpod-hpo uses it.

    Attributes:
        name: What ``compute.backend`` says to pick it (its registry key).
        compute: Its ``compute`` model in studies.yaml.
        build: Makes its :class:`~hpo.backends.Backend` for a study.
        describe_worker: What ``hpo status`` shows of one of its workers.
        volume: The volume model it brings, if any (a RunPod network volume);
            any backend's study may use any kind of volume its compute accepts.
        worker_hook: What the agent does inside its workers; None: a worker is
            a plain process that just exits.
    """

    name: str
    compute: type[ComputeConfig]
    build: BuildBackend
    describe_worker: DescribeWorker
    volume: type[VolumeConfig] | None = None
    worker_hook: WorkerHook | None = None
