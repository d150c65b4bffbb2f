"""``hpo run --remote`` on the fake RunPod: the controller runs on a CPU pod, the laptop's process is gone.

The fake runs the controller pod's container (the real agent, which runs the
real controller) as a local process, like every pod's. Nothing is patched:
the laptop side is ``python -m hpo`` in a subprocess that exits, the pod
reads its key from a RunPod secret the fake fills in when the container
boots, and the test reads the study from the volume. Each test ends with a
secret scan: the key is in no pod's environment as RunPod shows it, in no
file of the volume and in no pod's log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState
from studyfiles import fake_runpod_for, load_trials, make_workspace, study_config, study_volume, wait_for

from hpo.backends.runpod import controller_pod_name
from hpo.cli import main
from hpo.config import StudyConfig
from hpo.fake_runpod import FakeRunPod
from hpo.journal import open_storage
from hpo.layout import StudyLayout
from hpo.lease import Lease
from hpo.remote import KEY_ENV, secret_placeholder

pytestmark = pytest.mark.slow

API_KEY = "rpa_remote_controller_key_0451"
SECRET_NAME = "hpo_runpod_api_key"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tmp_path / "project"


@pytest.fixture
def fake(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod]:
    with fake_runpod_for(project, tmp_path, monkeypatch, API_KEY) as server:
        yield server
        _assert_no_key_anywhere(server, project, tmp_path / "fake")


def _assert_no_key_anywhere(server: FakeRunPod, project: Path, fake_dir: Path) -> None:
    """The secret scan: the key is in no pod as RunPod shows it, no volume file, no pod log."""
    for pod in server.pods(include_terminated=True):
        assert API_KEY not in repr(pod.request) + repr(pod.env), f"pod {pod.name} carries the key"
    for folder in (project / "storage", fake_dir):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert API_KEY.encode() not in path.read_bytes(), f"{path} holds the key"


def _cli(project: Path, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """``python -m hpo ARGS`` in the project, as a user runs it: a process of its own that exits."""
    return subprocess.run(
        [sys.executable, "-m", "hpo", *args, "--studies", "studies.yaml"],
        cwd=project, env=dict(os.environ), capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _controller_pods(server: FakeRunPod, study: str) -> list:  # type: ignore[type-arg]
    return [pod for pod in server.pods(include_terminated=True) if pod.name == controller_pod_name(study)]


def _live(server: FakeRunPod) -> list:  # type: ignore[type-arg]
    return [pod for pod in server.pods(include_terminated=True) if pod.status not in ("TERMINATED", "EXITED")]


def _set_secret(project: Path) -> None:
    assert main(["secret", "set", "--study", "pods", "--studies", str(project / "studies.yaml"), "--yes"]) == 0


def _gated(studies: Path, gate: Path) -> None:
    """Make the pods study's trials wait at step 2 until ``gate`` exists (tests/objectives/steady.py)."""
    head, pods, tail = studies.read_text().rpartition("  pods:\n")
    line = "      garbage: {type: categorical, choices: [false]}\n"
    assert pods and tail.count(line) == 1
    gated = tail.replace(line, line + f"      gate: {{type: categorical, choices: [{json.dumps(str(gate))}]}}\n")
    studies.write_text(head + pods + gated)


def test_a_remote_controller_runs_the_study_through_a_kill_and_a_preemption(fake: FakeRunPod, project: Path) -> None:
    studies = make_workspace(project, pace=0.2, max_step=8, trials=5, concurrency=2)
    gate = project / "open"
    _gated(studies, gate)  # until the test opens it, the study cannot finish early, however slow this machine
    config = study_config(studies, "pods")
    volume = study_volume(config)
    layout = StudyLayout("pods")

    refused = _cli(project, "run", "--study", "pods", "--remote")
    assert refused.returncode == 1 and "no RunPod secret 'hpo_runpod_api_key'" in refused.stderr, refused.stderr
    assert "hpo secret set --study pods" in refused.stderr and _controller_pods(fake, "pods") == []
    _set_secret(project)

    started = _cli(project, "run", "--study", "pods", "--remote")
    assert started.returncode == 0, started.stderr
    (pod,) = _controller_pods(fake, "pods")
    assert pod.id in started.stdout and "hpo stop --study pods" in started.stdout
    assert pod.env[KEY_ENV] == secret_placeholder(SECRET_NAME)  # only the placeholder, never the key
    assert (pod.cpu_flavor, pod.vcpu_count, pod.gpu_type, pod.spot) == ("cpu3c", 2, None, False)
    assert pod.cost_per_hr == pytest.approx(0.08)  # 2 vCPUs at the catalog's $0.04 per vCPU-hour

    # The laptop's process is gone; the pod holds the study.
    wait_for(lambda: getattr(Lease(volume, "pods").current(), "pod", None) == pod.id, 120, "the pod's lease")
    watching = _cli(project, "status", "--study", "pods")
    assert watching.returncode == 0 and f"controller: remote, pod {pod.id}, up " in watching.stdout, watching.stdout
    again = _cli(project, "run", "--study", "pods")
    assert again.returncode != 0 and f"pod {pod.id}" in again.stderr, again.stderr
    twice = _cli(project, "run", "--study", "pods", "--remote")
    assert twice.returncode != 0 and pod.id in twice.stderr, twice.stdout + twice.stderr

    # SIGKILL the controller mid-study: RunPod restarts the container, and the new controller adopts.
    wait_for(lambda: volume.exists(layout.events(1, 0)), 120, "trial 1's first events")
    fake.account.kill(pod.id)
    wait_for(lambda: len(fake.pod(pod.id).pids) >= 2, 120, "the controller's container to restart")
    wait_for(lambda: b"adopted" in volume.read_bytes(layout.controller_log), 120, "the new controller to adopt")

    # A spot preemption of a warm worker still resumes its trial.
    def a_busy_worker() -> object:
        return next((p for p in fake.pods(include_terminated=False) if p.name.startswith("hpo-pods-w") and p.status == "RUNNING"), None)

    wait_for(a_busy_worker, 120, "a running warm worker")
    victim = a_busy_worker()
    fake.preempt(victim.id)  # type: ignore[attr-defined]
    gate.touch()

    wait_for(lambda: fake.pod(pod.id).status == "TERMINATED", 300, "the controller pod to end itself")
    trials = load_trials(config, project / "reader")
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    wait_for(lambda: not _live(fake), 120, "every pod to end")
    log = _cli(project, "logs", "--study", "pods", "--controller").stdout
    assert log.count("--- controller of study pods starting") >= 2 and "this controller pod ends" in log
    assert "adopted" in log  # the restarted controller took over the running trials
    record = _study_attrs(config, project)[f"hpo:controller:{pod.id}"]
    bill = fake.pod(pod.id).billed_usd
    print(f"controller pod: recorded ${record['usd']:.6f} of a bill of ${bill:.6f}")  # type: ignore[index]
    assert 0 < record["usd"] <= bill + 1e-6  # type: ignore[index]  # up to its last poll: never more than billed
    status = _cli(project, "status", "--study", "pods", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["controller"]["running"] is False  # it ended with the study
    assert shown["spend"]["controller_pods"] == 1 and 0 < shown["spend"]["controller_usd"] < shown["spend"]["usd"]


def _study_attrs(config: StudyConfig, project: Path) -> dict[str, object]:
    """The study's system attributes, read from its journal as any reader does."""
    storage = open_storage(study_volume(config), config.name, cache_dir=project / "attrs").optuna
    return dict(storage.get_study_system_attrs(storage.get_study_id_from_name(config.name)))


def test_hpo_stop_ends_the_remote_controller_and_a_laptop_run_adopts_its_trials(fake: FakeRunPod, project: Path) -> None:
    studies = make_workspace(project, pace=0.1, max_step=8, trials=3, concurrency=2)
    gate = project / "open"
    _gated(studies, gate)  # the trials are still running when `hpo stop` comes, however slow this machine
    config = study_config(studies, "pods")
    volume = study_volume(config)
    _set_secret(project)
    assert _cli(project, "run", "--study", "pods", "--remote").returncode == 0
    (pod,) = _controller_pods(fake, "pods")
    wait_for(lambda: volume.exists(StudyLayout("pods").events(0, 0)), 120, "trial 0's first events")

    stopped = _cli(project, "stop", "--study", "pods", "--json")
    assert stopped.returncode == 0, stopped.stderr
    outcome = json.loads(stopped.stdout)
    assert outcome["outcome"] == "stopped" and outcome["pod"] == pod.id
    assert fake.pod(pod.id).status == "TERMINATED"
    assert Lease(volume, "pods").current() is None
    assert _cli(project, "stop", "--study", "pods").stdout.strip() == "study pods: no controller is running it"

    # The stopped controller's trials went on; a controller here adopts them and finishes the study.
    assert len([p for p in _live(fake) if p.name.startswith("hpo-pods-w")]) == 2
    gate.touch()
    finished = _cli(project, "run", "--study", "pods", "--json", timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["complete"] == 3
    wait_for(lambda: not _live(fake), 120, "every pod to end")
