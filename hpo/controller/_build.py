"""Wire a study's parts together: volume, storage, backend, lease, code snapshot."""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Callable
from pathlib import Path

from hpo.backends import Backend, backend_plugin
from hpo.code import check_volume_code_trusted, publish_objectives
from hpo.config import StudyConfig
from hpo.controller._controller import Controller
from hpo.controller._progress import ProgressSink
from hpo.cost import ControllerCost
from hpo.errors import ConfigError
from hpo.journal import open_storage
from hpo.lease import Lease
from hpo.pool import ASSIGNMENT_POLL_SECONDS, WarmPool
from hpo.volume import Volume


def open_study_volume(config: StudyConfig) -> Volume:
    """The study's volume as this machine reaches it (its kind says how: a folder, RunPod's S3 API)."""
    return config.volume.open()


def check_objective(config: StudyConfig, folder: Path) -> None:
    """Refuse, before any trial starts, an objective module that objectives/ does not have."""
    module = config.objective.partition(":")[0]
    if (folder / f"{module}.py").is_file() or (folder / module / "__init__.py").is_file():
        return
    known = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    close = difflib.get_close_matches(module, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; objectives there: {', '.join(known) or 'none'}"
    raise ConfigError(
        f"{config.source.name}: study {config.name!r}: key 'objective': no module {folder / module}.py{hint}"
    )


def make_backend(
    config: StudyConfig,
    volume: Volume,
    *,
    cache_dir: Path | None = None,
    passive: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Backend:
    """The backend ``compute.backend`` names, as its plug-in builds it (``cache_dir``: where it caches prices).

    With ``workers.reuse`` (the default) and a backend that can run warm
    workers, its workers run attempt after attempt behind a
    :class:`~hpo.pool.WarmPool`, which speaks attempts as any backend does.
    ``passive``: the caller only looks (``hpo status``, ``hpo cleanup``): the
    pool assigns, retires and terminates nothing on its own.
    """
    backend = backend_plugin(config.compute.backend).build(config, volume, cache_dir=cache_dir)
    if not config.workers.reuse or not backend.supports_workers:
        return backend
    return WarmPool(
        backend,
        volume,
        config.name,
        max_workers=config.budget.concurrency,
        idle_limit=config.workers.idle_limit,
        # A worker looks for its next attempt at least once per controller poll: a new trial
        # starts within one poll of its assignment.
        worker_poll=min(ASSIGNMENT_POLL_SECONDS, config.poll_interval),
        clock=clock,
        wall_clock=provider_clock(backend),
        passive=passive,
    )


def provider_clock(backend: Backend, wall_clock: Callable[[], float] = time.time) -> Callable[[], float]:
    """Epoch seconds on the clock the provider bills by: what its workers report, the wall clock until they do.

    A fake RunPod runs faster than the wall clock, and a laptop's clock may be
    off RunPod's: metering by the pods' own uptimes keeps a budget honest in
    both. Never goes backwards.
    """
    last = -math.inf

    def now() -> float:
        nonlocal last
        reported = backend.provider_now()
        last = max(last, reported if reported is not None else wall_clock())
        return last

    return now


def build_controller(
    config: StudyConfig,
    *,
    progress: ProgressSink | None = None,
    cache_dir: Path | None = None,
    backend: Backend | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall_clock: Callable[[], float] | None = None,
    pod: str | None = None,
    own_cost: Callable[[float], ControllerCost | None] | None = None,
) -> Controller:
    """A controller for ``config``, with every part opened but the lease not yet taken.

    ``wall_clock`` is the provider's clock in epoch seconds (billing is timed on
    it); by default the backend's reading of it (:func:`provider_clock`).
    ``pod``: the pod this controller runs on, if any (its lease names it);
    ``own_cost``: what that pod has cost so far (see :class:`Controller`).
    """
    objectives = config.source.parent / "objectives"
    check_objective(config, objectives)
    check_volume_code_trusted(config)  # local trials running code from an S3 volume must be opted into
    volume = open_study_volume(config)
    backend = backend or make_backend(config, volume, cache_dir=cache_dir, clock=clock)
    lease = Lease(volume, config.name, ttl=max(60.0, 4 * config.poll_interval), pod=pod)
    # The lease comes first: only its holder may open the journal as its writer.
    lease.acquire()
    try:
        storage = open_storage(volume, config.name, url=config.storage, writer=True, cache_dir=cache_dir)
        code_sha = publish_objectives(volume, config.name, objectives)
    except BaseException:
        lease.release()
        raise
    return Controller(
        config,
        volume=volume,
        storage=storage,
        backend=backend,
        lease=lease,
        code_sha=code_sha,
        progress=progress,
        clock=clock,
        sleep=sleep,
        wall_clock=wall_clock or provider_clock(backend),
        own_cost=own_cost,
    )
