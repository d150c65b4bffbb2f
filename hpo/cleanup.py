"""Find and stop the workers of a study that no running trial owns.

A worker is owned when its trial is RUNNING in the journal and it runs the
trial's current attempt; anything else (a pruned trial's pod that survived a
crash, an old attempt's pod, a pod of a finished study) is a stray that only
costs money.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from optuna.trial import TrialState

from hpo.backends import AttemptRef, Backend, WorkerHandle
from hpo.config import StudyConfig
from hpo.journal import open_storage
from hpo.pool import WarmPool
from hpo.trial_attrs import ATTR_ATTEMPTS, int_attr
from hpo.volume import Volume
from hpo.workers import PoolWorker


@dataclass(frozen=True)
class Stray:
    """A worker to stop, and why: an attempt's (``handle``), or a warm worker that runs nothing (``worker``)."""

    reason: str
    handle: WorkerHandle | None = None
    worker: PoolWorker | None = None

    @property
    def id(self) -> str:
        """The backend's id of the worker (a pod id, ``pid@start``)."""
        if self.handle is not None:
            return str(self.handle.detail.get("pod_id") or self.handle.detail.get("worker_id") or self.handle.id)
        assert self.worker is not None
        return self.worker.id

    @property
    def what(self) -> str:
        """``trial 3 attempt 0`` or ``warm worker w2``."""
        return str(self.handle.ref) if self.handle is not None else f"warm worker w{self.worker.index if self.worker else '?'}"


def owned_attempts(config: StudyConfig, volume: Volume, *, cache_dir: Path | None = None) -> set[AttemptRef]:
    """The current attempt of every running trial, from the journal."""
    storage = open_storage(volume, config.name, url=config.storage, cache_dir=cache_dir)
    study = storage.load_study(config.name)
    if study is None:
        return set()
    owned = set()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attempts = int_attr(trial.user_attrs, ATTR_ATTEMPTS)
        if attempts:
            owned.add(AttemptRef(trial.number, attempts - 1))
    return owned


def find_strays(config: StudyConfig, volume: Volume, backend: Backend, *, cache_dir: Path | None = None) -> list[Stray]:
    """Every live worker of the study that no running trial owns."""
    owned = owned_attempts(config, volume, cache_dir=cache_dir)
    strays = []
    for ref, handle in sorted(backend.list_live().items()):
        if ref not in owned:
            strays.append(Stray(f"trial {ref.trial} is not running attempt {ref.attempt}", handle=handle))
    if isinstance(backend, WarmPool):
        for worker in backend.idle_workers():
            strays.append(Stray("it runs no trial (a controller would end it after its idle limit)", worker=worker))
    return strays


def cleanup(config: StudyConfig, volume: Volume, backend: Backend, *, dry_run: bool, cache_dir: Path | None = None) -> list[Stray]:
    """Stop every stray (unless ``dry_run``) and dispose of dead workers; return what was (or would be) done."""
    strays = find_strays(config, volume, backend, cache_dir=cache_dir)
    if dry_run:
        return strays
    for stray in strays:
        if stray.handle is not None:
            backend.terminate(stray.handle)
        elif stray.worker is not None and isinstance(backend, WarmPool):
            backend.retire(stray.worker)
    dead = [Stray("its container has exited", handle=handle) for handle in backend.reap_dead()]
    return strays + dead
