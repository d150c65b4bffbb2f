"""The backend contract: every Backend implementation must pass these tests.

Each backend runs real workers (the agent, on a long, slow test objective) and
is held to what the controller relies on: launch returns at once, one listing
finds every live worker by its attempt (also a worker started by another
backend instance: a crashed controller's), terminate is immediate, idempotent
and silent for a worker already gone, and of two workers running one attempt
the oldest runs it and the other is an extra, for the controller to stop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpo.backends import AttemptRef, Backend, LocalBackend, WorkerHandle
from hpo.code import publish_objectives
from hpo.config import StudyConfig
from hpo.events import drain
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec
from hpo.volume import Volume

from studyfiles import count_events, make_workspace, study_config, study_volume, wait_for

pytestmark = pytest.mark.slow


@dataclass
class BackendWorld:
    config: StudyConfig
    volume: Volume
    make: type[Backend] | object  # a callable returning a fresh backend for the study

    def new_backend(self) -> Backend:
        return self.make()  # type: ignore[operator]


@pytest.fixture(params=["local"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendWorld]:
    studies = make_workspace(tmp_path, pace=0.2, max_step=200, trials=3)
    config = study_config(studies, "steady")
    volume = study_volume(config)
    sha = publish_objectives(volume, config.name, studies.parent / "objectives")
    layout = StudyLayout(config.name)
    for trial in range(4):
        TrialSpec(
            study=config.name, trial=trial, objective="steady:stubborn" if trial == 3 else "steady",
            params={"x": 0.5, "pace": 0.2, "fail_trial": -1, "garbage": False},
            search_space={name: p.model_dump(mode="json") for name, p in config.search_space.items()},
            max_step=200, code=sha,
        ).write(volume, layout.spec(trial))
    if request.param == "local":
        made: list[LocalBackend] = []

        def make() -> Backend:
            made.append(LocalBackend(config.name, volume, kill_grace=2.0))
            return made[-1]

        world = BackendWorld(config, volume, make)
        yield world
        cleanup = made[-1] if made else LocalBackend(config.name, volume)
        for handle in [*cleanup.list_live().values(), *cleanup.extras()]:
            cleanup.terminate(handle)
        wait_for(lambda: not cleanup.list_live() and not cleanup.extras(), 15, "the worker")



def _started(world: BackendWorld, ref: AttemptRef) -> bool:
    return any(e.type == "start" for e in drain(world.volume, StudyLayout(world.config.name).events(ref.trial, ref.attempt)))


def test_launch_returns_at_once_and_the_worker_is_listed_by_its_attempt(world: BackendWorld) -> None:
    backend = world.new_backend()
    began = time.monotonic()
    handle = backend.launch(AttemptRef(0, 0))
    assert time.monotonic() - began < 5  # accepted, not awaited
    assert isinstance(handle, WorkerHandle) and handle.ref == AttemptRef(0, 0)
    live = backend.list_live()
    assert set(live) == {AttemptRef(0, 0)}
    wait_for(lambda: _started(world, AttemptRef(0, 0)), 30, "the worker")
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
    wait_for(lambda: _started(world, AttemptRef(1, 0)), 30, "the worker")
    fresh = world.new_backend()  # the next controller, after a crash
    assert set(fresh.list_live()) == {AttemptRef(1, 0)}


def test_terminate_stops_the_worker_and_is_idempotent(world: BackendWorld) -> None:
    backend = world.new_backend()
    handle = backend.launch(AttemptRef(0, 0))
    wait_for(lambda: _started(world, AttemptRef(0, 0)), 30, "the worker")
    began = time.monotonic()
    backend.terminate(handle)
    assert time.monotonic() - began < 1  # returns at once
    backend.terminate(handle)
    wait_for(lambda: AttemptRef(0, 0) not in backend.list_live(), 15, "the worker")
    backend.terminate(handle)  # gone: silently fine
    events = drain(world.volume, StudyLayout(world.config.name).events(0, 0))
    assert events[-1].type == "preempted"  # a SIGTERM without a prune order looks like a preemption


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(world: BackendWorld) -> None:
    backend = world.new_backend()
    backend.launch(AttemptRef(3, 0))  # objective steady:stubborn ignores SIGTERM
    layout = StudyLayout(world.config.name)
    wait_for(lambda: count_events(world.volume, layout.events(3, 0), "report") > 0, 30, "the first report")
    backend.terminate(backend.list_live()[AttemptRef(3, 0)])
    time.sleep(0.5)
    assert AttemptRef(3, 0) in backend.list_live()  # still there within the grace period
    wait_for(lambda: AttemptRef(3, 0) not in backend.list_live(), 15, "the worker")  # then SIGKILLed


def _extras_now(backend: Backend) -> list[WorkerHandle]:
    backend.list_live()
    return backend.extras()


def test_two_workers_of_one_attempt_the_oldest_is_live_the_younger_an_extra(world: BackendWorld) -> None:
    ref = AttemptRef(1, 0)
    first = world.new_backend().launch(ref)
    wait_for(lambda: _started(world, ref), 30, "the first worker")
    stray = world.new_backend().launch(ref)  # a crashed controller's retry started the attempt again
    backend = world.new_backend()  # the next controller sees both
    live = backend.list_live()
    assert set(live) == {ref} and live[ref].id == first.id
    extras = backend.extras()
    assert [(h.ref, h.id) for h in extras] == [(ref, stray.id)]
    assert extras[0].billing is not None  # metered like any worker
    backend.terminate(extras[0])
    wait_for(lambda: not _extras_now(backend), 15, "the stray to end")
    assert backend.list_live()[ref].id == first.id
