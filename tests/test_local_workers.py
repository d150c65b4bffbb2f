"""Which processes the ``local`` backend counts as a study's workers: those it started, and only those.

An objective may start processes of its own (joblib's ``n_jobs=-1``, a
DataLoader's workers); they inherit the trial's environment but are not
workers of the attempt, and must never be listed as a second worker (the
controller would terminate them as duplicates). Workers a previous backend
started (a killed ``hpo run``) are still found: each start is recorded in the
study's folder of this machine's cache, and a backend that finds no record
looks once for the study's session leaders by their environment.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from studyfiles import REPO, make_workspace, study_config, study_volume, wait_for

from hpo.backends import AttemptRef, LocalBackend
from hpo.code import publish_objectives
from hpo.config import StudyConfig
from hpo.events import drain
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec
from hpo.volume import Volume

pytestmark = pytest.mark.slow

PACE = 0.2  # seconds per step, for 200 steps: the trial runs far longer than any test waits


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StudyConfig, Volume]]:
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    studies = make_workspace(tmp_path / "project", pace=PACE, max_step=200, trials=2)
    shutil.copy(REPO / "tests" / "objectives" / "forking.py", studies.parent / "objectives" / "forking.py")
    config = study_config(studies, "steady")
    volume = study_volume(config)
    sha = publish_objectives(volume, config.name, studies.parent / "objectives")
    for trial in range(2):
        TrialSpec(
            study=config.name, trial=trial, objective="forking", params={"x": 0.5, "pace": PACE},
            search_space={name: config.search_space[name].model_dump(mode="json") for name in ("x", "pace")},
            max_step=200, code=sha,
        ).write(volume, StudyLayout(config.name).spec(trial))
    yield config, volume
    sweeper = LocalBackend(config.name, volume, kill_grace=0.0)
    for handle in [*sweeper.list_live().values(), *sweeper.extras()]:
        sweeper.terminate(handle)
    wait_for(lambda: not sweeper.list_live() and not sweeper.extras(), 30, "every worker to end")


def _child_pid(volume: Volume, config: StudyConfig, ref: AttemptRef) -> int | None:
    """The pid of the process the forking objective started, once its worker has said it."""
    for event in drain(volume, StudyLayout(config.name).events(ref.trial, ref.attempt)):
        if event.type == "user_attr" and event.key == "child_pid":
            return int(event.value)
    return None


def _wait_for_child(volume: Volume, config: StudyConfig, ref: AttemptRef) -> int:
    wait_for(lambda: _child_pid(volume, config, ref) is not None, 90, f"the objective of {ref} to start its child")
    pid = _child_pid(volume, config, ref)
    assert pid is not None and psutil.pid_exists(pid)
    return pid


def test_a_process_the_objective_starts_is_not_a_second_worker(study: tuple[StudyConfig, Volume]) -> None:
    config, volume = study
    backend = LocalBackend(config.name, volume)
    ref = AttemptRef(0, 0)
    handle = backend.launch(ref)
    child = _wait_for_child(volume, config, ref)
    for _ in range(3):  # several polls: none of them takes the child for a worker
        assert backend.list_live() == {ref: handle}
        assert backend.extras() == []
    assert psutil.Process(child).is_running()


def test_a_new_backend_adopts_the_workers_an_earlier_one_started_and_not_their_children(
    study: tuple[StudyConfig, Volume],
) -> None:
    config, volume = study
    first = LocalBackend(config.name, volume)
    handles = {ref: first.launch(ref) for ref in (AttemptRef(0, 0), AttemptRef(1, 0))}
    for ref in handles:
        _wait_for_child(volume, config, ref)
    later = LocalBackend(config.name, volume)  # `hpo run` again, after the first was killed
    assert later.list_live() == handles
    assert later.extras() == []


def test_without_a_record_a_new_backend_still_finds_the_workers_once_by_environment(
    study: tuple[StudyConfig, Volume], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, volume = study
    first = LocalBackend(config.name, volume)
    handle = first.launch(AttemptRef(0, 0))
    _wait_for_child(volume, config, AttemptRef(0, 0))
    # Another cache folder (or a controller from before the records): no record of the start.
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "another-cache"))
    later = LocalBackend(config.name, volume)
    assert later.list_live() == {AttemptRef(0, 0): handle}
    assert later.extras() == []
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))  # where the sweeper finds it


def test_a_worker_that_ended_is_no_longer_listed_by_any_backend(study: tuple[StudyConfig, Volume]) -> None:
    config, volume = study
    first = LocalBackend(config.name, volume, kill_grace=0.0)
    ref = AttemptRef(0, 0)
    handle = first.launch(ref)
    _wait_for_child(volume, config, ref)
    later = LocalBackend(config.name, volume)
    assert ref in later.list_live()
    first.terminate(handle)
    wait_for(lambda: ref not in first.list_live(), 30, "the worker to end")
    wait_for(lambda: ref not in later.list_live(), 30, "the other backend to see it gone")


def test_a_study_whose_objective_starts_processes_completes_with_no_duplicate_terminated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo.controller import ProgressSink, build_controller

    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    studies = make_workspace(tmp_path / "project", pace=0.1, max_step=8, trials=3, concurrency=3)
    shutil.copy(REPO / "tests" / "objectives" / "forking.py", studies.parent / "objectives" / "forking.py")
    studies.write_text(studies.read_text().replace("objective: steady", "objective: forking", 1))  # the steady study's
    config = study_config(studies, "steady")
    assert config.objective == "forking"
    messages: list[str] = []

    class Recorder(ProgressSink):
        def message(self, text: str) -> None:
            messages.append(text)

    controller = build_controller(config, cache_dir=tmp_path / "cache", progress=Recorder())
    summary = controller.run()
    assert (summary.complete, summary.failed) == (3, 0), messages
    assert not [m for m in messages if "duplicate" in m], messages
