"""What only the ``local`` backend does, beyond the backend contract: a graceful SIGTERM, then SIGKILL; warm workers.

A local worker is told to stop with SIGTERM, so the agent records the end of
its attempt (a preemption, since no prune order came), and a worker that
ignores it is SIGKILLed once ``kill_grace`` has passed on the backend's clock,
which these tests drive by hand: nothing waits for a duration.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from backend_worlds import IDLE_WORKER_ENV, MAX_STEP, PACE, STUBBORN_TRIAL, write_specs
from backend_worlds.local import idle_capable_python
from studyfiles import count_events, make_workspace, study_config, study_volume, wait_for

from hpo.backends import AttemptRef, LocalBackend
from hpo.config import StudyConfig
from hpo.events import drain
from hpo.layout import StudyLayout
from hpo.volume import Volume
from hpo.workers import Billing

pytestmark = pytest.mark.slow


class Clock:
    """The backend's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def study(tmp_path: Path) -> Iterator[tuple[StudyConfig, Volume]]:
    studies = make_workspace(tmp_path, pace=PACE, max_step=MAX_STEP, trials=3)
    config = study_config(studies, "steady")
    volume = study_volume(config)
    write_specs(config, volume, tmp_path / "objectives")
    yield config, volume
    sweeper = LocalBackend(config.name, volume, kill_grace=0.0)
    for handle in [*sweeper.list_live().values(), *sweeper.extras()]:
        sweeper.terminate(handle)
    wait_for(lambda: not sweeper.list_live() and not sweeper.extras(), 30, "every worker to end")


def test_terminate_sends_sigterm_and_the_attempt_records_a_preemption(study: tuple[StudyConfig, Volume]) -> None:
    config, volume = study
    backend = LocalBackend(config.name, volume)
    ref = AttemptRef(0, 0)
    handle = backend.launch(ref)
    events = StudyLayout(config.name).events(ref.trial, ref.attempt)
    wait_for(lambda: count_events(volume, events, "start") > 0, 90, "the worker to start")
    backend.terminate(handle)
    wait_for(lambda: ref not in backend.list_live(), 30, "the worker to end")
    assert drain(volume, events)[-1].type == "preempted"  # a SIGTERM without a prune order looks like a preemption


def test_a_worker_that_ignores_sigterm_is_killed_once_the_grace_period_is_over(
    study: tuple[StudyConfig, Volume],
) -> None:
    config, volume = study
    clock = Clock()
    backend = LocalBackend(config.name, volume, kill_grace=2.0, clock=clock)
    ref = AttemptRef(STUBBORN_TRIAL, 0)  # steady:stubborn ignores SIGTERM
    backend.launch(ref)
    events = StudyLayout(config.name).events(ref.trial, ref.attempt)
    wait_for(lambda: count_events(volume, events, "report") > 0, 90, "the first report")
    backend.terminate(backend.list_live()[ref])
    clock.now = 1.9  # within the grace period: SIGTERM only, which it ignores
    assert ref in backend.list_live()
    backend.terminate(backend.list_live()[ref])  # signalled already: not signalled again, the deadline stands
    clock.now = 2.0  # the grace period is over: the next listing SIGKILLs it
    wait_for(lambda: ref not in backend.list_live(), 30, "the worker to be killed")


# -- warm workers (issue 17) ---------------------------------------------------------------


def _idle_python(tmp_path: Path) -> str:
    return str(idle_capable_python(tmp_path / "bin"))


def _sweep_workers(config: StudyConfig, volume: Volume, **options: object) -> None:
    sweeper = LocalBackend(config.name, volume, kill_grace=0.0, **options)  # type: ignore[arg-type]
    for worker in [*sweeper.list_workers().values(), *sweeper.worker_extras()]:
        sweeper.terminate_worker(worker)
    wait_for(lambda: not sweeper.list_workers() and not sweeper.worker_extras(), 30, "every warm worker to end")


def test_a_warm_worker_gets_the_worker_env_and_logs_to_its_folder(
    study: tuple[StudyConfig, Volume], tmp_path: Path
) -> None:
    config, volume = study
    backend = LocalBackend(config.name, volume, python=_idle_python(tmp_path))
    assert backend.supports_workers
    try:
        worker = backend.launch_worker(3, {**IDLE_WORKER_ENV, "HPO_WORKER_POLL": "0.1"})
        env = psutil.Process(worker.detail["pid"]).environ()
        assert env["HPO_WORKER"] == "3" and env["HPO_WORKER_POLL"] == "0.1" and env["HPO_STUDY"] == config.name
        assert env["HPO_VOLUME"] == volume.address and "HPO_TRIAL" not in env and "HPO_ATTEMPT" not in env
        assert os.getsid(worker.detail["pid"]) == worker.detail["pid"]  # its own session: killed as a group
        folder = volume.local_path(f"hpo/{config.name}/workers/w3")
        assert folder is not None and (folder / "output.txt").exists()
        assert volume.read_json(f"hpo/{config.name}/workers/w3/launch.json")["pid"] == worker.detail["pid"]
        assert worker.billing == Billing(usd_per_hr=0.0, gpu_count=0, started_at=worker.billing.started_at)  # type: ignore[union-attr]
    finally:
        _sweep_workers(config, volume)


def test_a_warm_worker_started_without_a_record_is_found_by_its_environment(
    study: tuple[StudyConfig, Volume], tmp_path: Path
) -> None:
    config, volume = study
    started = LocalBackend(config.name, volume, python=_idle_python(tmp_path), record_dir=tmp_path / "records-a")
    try:
        worker = started.launch_worker(0, IDLE_WORKER_ENV)
        attempt = started.launch(AttemptRef(1, 0))
        other = LocalBackend(config.name, volume, record_dir=tmp_path / "records-b")  # another cache: no record
        assert {i: w.id for i, w in other.list_workers().items()} == {0: worker.id}
        assert {r: h.id for r, h in other.list_live().items()} == {AttemptRef(1, 0): attempt.id}
        other.terminate(attempt)
    finally:
        _sweep_workers(config, volume, record_dir=tmp_path / "records-b")


def test_a_warm_worker_that_ignores_sigterm_is_killed_once_the_grace_period_is_over(
    study: tuple[StudyConfig, Volume], tmp_path: Path
) -> None:
    config, volume = study
    stubborn = tmp_path / "stubborn-python"
    stubborn.write_text("#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.1; done\n")
    stubborn.chmod(0o755)
    clock = Clock()
    backend = LocalBackend(config.name, volume, kill_grace=2.0, clock=clock, python=str(stubborn))
    try:
        worker = backend.launch_worker(0, {})
        backend.terminate_worker(worker)
        clock.now = 1.9  # within the grace period: SIGTERM only, which it ignores
        assert 0 in backend.list_workers()
        clock.now = 2.0  # over: the next listing SIGKILLs its group
        wait_for(lambda: 0 not in backend.list_workers(), 30, "the stubborn worker to be killed")
    finally:
        _sweep_workers(config, volume)


def test_a_record_of_a_warm_worker_holds_its_index_and_an_attempts_record_is_unchanged(tmp_path: Path) -> None:
    from hpo.backends.local._registry import Recorded, WorkerRecord

    record = WorkerRecord(tmp_path / "rec")
    record.add("10@1.000", Recorded(None, 10, 1.0, 4))
    record.add("11@2.000", Recorded(AttemptRef(2, 1), 11, 2.0))
    (tmp_path / "rec" / "12@3.000.json").write_text('{"worker": -1, "pid": 12, "create_time": 3.0}')
    fresh = WorkerRecord(tmp_path / "rec")
    assert fresh.workers() == {"10@1.000": Recorded(None, 10, 1.0, 4), "11@2.000": Recorded(AttemptRef(2, 1), 11, 2.0)}
