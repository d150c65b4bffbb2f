"""The backend contract: every registered backend must pass these tests.

The suite runs once per backend in the registry (:data:`hpo.backends.BACKENDS`),
in the world ``tests/backend_worlds/<name>.py`` sets up for it (this machine
for ``local``; the fake RunPod API, whose pods run the real agent, for
``runpod``), on a backend built by its own plug-in from a study's config.
Each runs real workers (the agent, on a long, slow test objective) and is
held to what the controller relies on: launch returns at once, one listing
finds every live worker by its attempt (also a worker started by another
backend instance: a crashed controller's), terminate is immediate, idempotent
and silent for a worker already gone, a worker that ignores SIGTERM still
ends, and of two workers running one attempt the oldest runs it and the other
is an extra, for the controller to stop. What only one backend does (the
local backend's SIGTERM and grace period) is tested beside its other tests.

Warm workers (:mod:`hpo.pool`), for a backend that has them: a worker is
listed by its index with its billing, never as an attempt (nor an attempt as
a worker), a new backend instance finds it, terminating it ends it, and of two
workers with one index the oldest is listed and the other is an extra. Their
processes sleep until stopped (:data:`~backend_worlds.IDLE_WORKER_ENV`): the
warm worker's own loop is the pool's to test.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from backend_worlds import IDLE_WORKER_ENV, MAX_STEP, PACE, STUBBORN_TRIAL, write_specs
from studyfiles import count_events, make_workspace, study_config, study_volume, wait_for

from hpo.backends import BACKENDS, AttemptRef, Backend, WorkerHandle, backend_plugin
from hpo.config import StudyConfig
from hpo.events import drain
from hpo.layout import StudyLayout
from hpo.volume import Volume
from hpo.workers import PoolWorker

pytestmark = pytest.mark.slow

START_DEADLINE = 90.0
"""Seconds for a worker's agent to start (an interpreter and Optuna on a loaded machine; a pod's provisioning)."""

END_DEADLINE = 30.0
"""Seconds for a terminated worker to leave the listing (the local backend's SIGKILL comes after a 5 s grace)."""


@dataclass
class BackendWorld:
    """A study whose specs are written, and a way to make a fresh backend for it (a new controller's)."""

    config: StudyConfig
    volume: Volume
    make: Callable[[], Backend]

    def new_backend(self) -> Backend:
        return self.make()


def _world_of(name: str) -> object:
    try:
        return importlib.import_module(f"backend_worlds.{name}")
    except ModuleNotFoundError:
        pytest.fail(f"backend {name!r} is registered but has no tests/backend_worlds/{name}.py to run the contract in")


@pytest.fixture(params=sorted(BACKENDS))
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BackendWorld]:
    name = request.param
    setup = _world_of(name)
    project = tmp_path / "project"
    studies = make_workspace(project, pace=PACE, max_step=MAX_STEP, trials=3, spot=False)
    with setup.provider(project, tmp_path, monkeypatch):  # type: ignore[attr-defined]
        config = study_config(studies, setup.STUDY)  # type: ignore[attr-defined]
        assert config.compute.backend == name
        volume = study_volume(config)
        write_specs(config, volume, project / "objectives")
        made: list[Backend] = []

        def make() -> Backend:
            made.append(backend_plugin(name).build(config, volume, cache_dir=tmp_path / "cache"))
            return made[-1]

        yield BackendWorld(config, volume, make)
        cleanup = make()
        for handle in [*cleanup.list_live().values(), *cleanup.extras()]:
            cleanup.terminate(handle)
        wait_for(lambda: not cleanup.list_live() and not cleanup.extras(), END_DEADLINE, "every worker to end")
        if cleanup.supports_workers:
            for worker in [*cleanup.list_workers().values(), *cleanup.worker_extras()]:
                cleanup.terminate_worker(worker)
            wait_for(lambda: not _workers_now(cleanup), END_DEADLINE, "every warm worker to end")
        for backend in made:
            backend.close()


def _started(world: BackendWorld, ref: AttemptRef) -> bool:
    events = StudyLayout(world.config.name).events(ref.trial, ref.attempt)
    return any(e.type == "start" for e in drain(world.volume, events))


def test_launch_returns_at_once_and_the_worker_is_listed_by_its_attempt(world: BackendWorld) -> None:
    backend = world.new_backend()
    began = time.monotonic()
    handle = backend.launch(AttemptRef(0, 0))
    assert time.monotonic() - began < 5  # accepted, not awaited
    assert isinstance(handle, WorkerHandle) and handle.ref == AttemptRef(0, 0)
    live = backend.list_live()
    assert set(live) == {AttemptRef(0, 0)}
    wait_for(lambda: _started(world, AttemptRef(0, 0)), START_DEADLINE, "the worker")
    assert AttemptRef(0, 0) in backend.list_live()


def test_one_listing_finds_every_worker(world: BackendWorld) -> None:
    backend = world.new_backend()
    refs = [AttemptRef(0, 0), AttemptRef(1, 0), AttemptRef(2, 1)]
    for ref in refs:
        backend.launch(ref)
    assert set(backend.list_live()) == set(refs)


def test_a_new_backend_instance_finds_workers_an_old_one_started(world: BackendWorld) -> None:
    old = world.new_backend()
    old.launch(AttemptRef(1, 0))
    wait_for(lambda: _started(world, AttemptRef(1, 0)), START_DEADLINE, "the worker")
    fresh = world.new_backend()  # the next controller, after a crash
    assert set(fresh.list_live()) == {AttemptRef(1, 0)}


def test_terminate_stops_the_worker_and_is_idempotent(world: BackendWorld) -> None:
    backend = world.new_backend()
    handle = backend.launch(AttemptRef(0, 0))
    wait_for(lambda: _started(world, AttemptRef(0, 0)), START_DEADLINE, "the worker")
    began = time.monotonic()
    backend.terminate(handle)
    assert time.monotonic() - began < 5  # returns at once, without waiting for the worker to end
    backend.terminate(handle)
    wait_for(lambda: AttemptRef(0, 0) not in backend.list_live(), END_DEADLINE, "the worker to end")
    backend.terminate(handle)  # gone: silently fine


def test_a_worker_that_ignores_sigterm_still_ends(world: BackendWorld) -> None:
    ref = AttemptRef(STUBBORN_TRIAL, 0)  # objective steady:stubborn ignores SIGTERM and never finishes
    backend = world.new_backend()
    backend.launch(ref)
    layout = StudyLayout(world.config.name)
    wait_for(lambda: count_events(world.volume, layout.events(ref.trial, 0), "report") > 0, START_DEADLINE, "a report")
    backend.terminate(backend.list_live()[ref])
    wait_for(lambda: ref not in backend.list_live(), END_DEADLINE, "the stubborn worker to end")


def _extras_now(backend: Backend) -> list[WorkerHandle]:
    backend.list_live()
    return backend.extras()


def test_two_workers_of_one_attempt_the_oldest_is_live_the_younger_an_extra(world: BackendWorld) -> None:
    ref = AttemptRef(1, 0)
    first = world.new_backend().launch(ref)
    wait_for(lambda: _started(world, ref), START_DEADLINE, "the first worker")
    stray = world.new_backend().launch(ref)  # a crashed controller's retry started the attempt again
    backend = world.new_backend()  # the next controller sees both
    live = backend.list_live()
    assert set(live) == {ref} and live[ref].id == first.id
    extras = backend.extras()
    assert [(h.ref, h.id) for h in extras] == [(ref, stray.id)]
    assert extras[0].billing is not None  # metered like any worker
    backend.terminate(extras[0])
    wait_for(lambda: not _extras_now(backend), END_DEADLINE, "the stray to end")
    assert backend.list_live()[ref].id == first.id


# -- warm workers ---------------------------------------------------------------------------------


def _workers_now(backend: Backend) -> list[PoolWorker]:
    return [*backend.list_workers().values(), *backend.worker_extras()]


def _needs_workers(backend: Backend) -> None:
    if not backend.supports_workers:
        pytest.skip(f"the {backend.name} backend has no warm workers")


def test_a_warm_worker_is_listed_by_its_index_with_billing_and_never_as_an_attempt(world: BackendWorld) -> None:
    backend = world.new_backend()
    _needs_workers(backend)
    ref = AttemptRef(1, 0)
    handle = backend.launch(ref)
    began = time.monotonic()
    worker = backend.launch_worker(0, IDLE_WORKER_ENV)
    assert time.monotonic() - began < 5  # accepted, not awaited
    assert isinstance(worker, PoolWorker) and worker.index == 0 and worker.billing is not None
    workers = backend.list_workers()
    assert set(workers) == {0} and workers[0].id == worker.id  # not the attempt's worker
    listed = workers[0].billing
    assert listed is not None and listed.usd_per_hr is not None and listed.started_at is not None
    assert {r: h.id for r, h in backend.list_live().items()} == {ref: handle.id}  # not the warm worker
    assert backend.extras() == [] and backend.worker_extras() == []


def test_a_new_backend_instance_finds_a_live_warm_worker(world: BackendWorld) -> None:
    old = world.new_backend()
    _needs_workers(old)
    worker = old.launch_worker(2, IDLE_WORKER_ENV)
    fresh = world.new_backend()  # the next controller, after a crash
    wait_for(lambda: 2 in fresh.list_workers(), START_DEADLINE, "the new backend to list worker 2")
    assert fresh.list_workers()[2].id == worker.id and not fresh.list_live()


def test_terminate_worker_ends_it_returns_at_once_and_is_idempotent(world: BackendWorld) -> None:
    backend = world.new_backend()
    _needs_workers(backend)
    worker = backend.launch_worker(1, IDLE_WORKER_ENV)
    wait_for(lambda: backend.list_workers().get(1, worker).status == "running", START_DEADLINE, "worker 1 to run")
    began = time.monotonic()
    backend.terminate_worker(worker)
    assert time.monotonic() - began < 5
    backend.terminate_worker(worker)
    wait_for(lambda: 1 not in backend.list_workers(), END_DEADLINE, "worker 1 to end")
    backend.terminate_worker(worker)  # gone: silently fine
    assert 1 not in world.new_backend().list_workers()


def test_two_warm_workers_of_one_index_the_oldest_is_listed_the_younger_an_extra(world: BackendWorld) -> None:
    first = world.new_backend()
    _needs_workers(first)
    oldest = first.launch_worker(3, IDLE_WORKER_ENV)
    wait_for(lambda: 3 in world.new_backend().list_workers(), START_DEADLINE, "the first worker 3")
    stray = world.new_backend().launch_worker(3, IDLE_WORKER_ENV)  # a crashed controller's retry
    backend = world.new_backend()  # the next controller sees both
    workers = backend.list_workers()
    assert set(workers) == {3} and workers[3].id == oldest.id
    extras = backend.worker_extras()
    assert [(w.index, w.id) for w in extras] == [(3, stray.id)]
    assert extras[0].billing is not None  # metered like any worker
    backend.terminate_worker(extras[0])
    wait_for(lambda: (backend.list_workers(), not backend.worker_extras())[1], END_DEADLINE, "the stray to end")
    assert backend.list_workers()[3].id == oldest.id
