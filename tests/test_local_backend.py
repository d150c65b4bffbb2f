"""What only the ``local`` backend does, beyond the backend contract: a graceful SIGTERM, then SIGKILL.

A local worker is told to stop with SIGTERM, so the agent records the end of
its attempt (a preemption, since no prune order came), and a worker that
ignores it is SIGKILLed once ``kill_grace`` has passed on the backend's clock,
which these tests drive by hand: nothing waits for a duration.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from backend_worlds import MAX_STEP, PACE, STUBBORN_TRIAL, write_specs
from studyfiles import count_events, make_workspace, study_config, study_volume, wait_for

from hpo.backends import AttemptRef, LocalBackend
from hpo.config import StudyConfig
from hpo.events import drain
from hpo.layout import StudyLayout
from hpo.volume import Volume

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
