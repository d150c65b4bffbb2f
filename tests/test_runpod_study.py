"""Studies on RunPod, rehearsed against the fake RunPod API over HTTP.

The controller and the backend are the real ones; the fake runs each pod's
container (the real agent) as a local process, provisions after a delay,
bills per second, preempts spot pods with SIGTERM then SIGKILL, runs out of
capacity, and fails the way RunPod fails. Nothing is patched. Each takes
seconds: all are marked ``slow`` but the spot study's, the fast suite's
end-to-end rehearsal of a RunPod study.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState
from studyfiles import (
    VOLUME_ID,
    count_events,
    first_reports,
    load_trials,
    make_workspace,
    study_config,
    study_volume,
    wait_for,
)

from hpo.backends import AttemptRef
from hpo.backends.runpod import PodRequest, RunPodApi, parse_worker_pod_name, pod_name, worker_pod_name
from hpo.controller import build_controller, make_backend
from hpo.events import drain
from hpo.fake_runpod import FakeRunPod
from hpo.layout import StudyLayout
from hpo.records import read_launch
from hpo.status import study_rows

API_KEY = "rpa_test_account_key"
SECRET = "s3cr3t-never-to-leak-0451"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tmp_path / "project"


@pytest.fixture
def fake(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod]:
    (project / "storage").mkdir(parents=True)
    server = FakeRunPod(
        volumes={VOLUME_ID: project / "storage"},
        volume_data_center="EU-RO-1",
        api_keys={API_KEY},
        time_scale=20.0,
        provision_seconds=4.0,
        start_seconds=2.0,
        kill_grace_seconds=5.0,
        workdir=tmp_path / "fake",
        pod_command=[sys.executable, str(Path(__file__).parent / "pod_entry.py")],
    ).start()
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    monkeypatch.setenv("HPO_RUNPOD_REST_URL", server.url)
    monkeypatch.setenv("RUNPOD_API_URL", "https://rest.runpod.io/v1")  # runpodctl's: never ours
    monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)
    # Secrets a user's shell may hold: none may reach a pod, a request body or the volume.
    for name in ("AWS_SECRET_ACCESS_KEY", "RUNPOD_S3_SECRET_KEY", "HF_TOKEN"):
        monkeypatch.setenv(name, SECRET)
    yield server
    try:
        assert _live_pods(server) == [], "the fake still holds live pods of the study"
        for pod in server.pods(include_terminated=True):
            sent = repr(pod.request) + repr(pod.env)
            assert SECRET not in sent and API_KEY not in sent
        assert not any(SECRET.encode() in p.read_bytes() for p in (project / "storage").rglob("*") if p.is_file())
    finally:
        server.stop()


def _live_pods(fake: FakeRunPod) -> list:  # type: ignore[type-arg]
    return [p for p in fake.pods(include_terminated=True) if p.status not in ("TERMINATED", "EXITED")]


def _assert_curves_exact(config, trials) -> None:  # type: ignore[no-untyped-def]
    for trial in trials:
        x = trial.params["x"]
        assert trial.intermediate_values == {s: x + 1.0 / s for s in range(1, config.fidelity.max_step + 1)}
        assert trial.intermediate_values == first_reports(config, trial.number)


def test_a_spot_study_survives_preemptions_and_leaves_no_pod(fake: FakeRunPod, project: Path, tmp_path: Path) -> None:
    """Warm workers: a preempted worker's attempt resumes from its checkpoint on another worker."""
    studies = make_workspace(project, pace=0.15, max_step=8, trials=3, concurrency=2)
    config = study_config(studies, "pods")
    volume = study_volume(config)
    layout = StudyLayout(config.name)
    controller = build_controller(config, cache_dir=tmp_path / "cache")
    thread = threading.Thread(target=controller.run)
    thread.start()
    try:
        wait_for(lambda: count_events(volume, layout.events(0, 0), "checkpoint") >= 3, 60, "3 checkpoints")
        launch = read_launch(volume, layout.launch(0, 0))
        assert launch is not None and launch.worker is not None  # a warm worker runs it
        victim = next(p for p in fake.pods() if p.name == worker_pod_name("pods", launch.worker))
        assert victim.spot
        rows = study_rows(config, volume, live=make_backend(config, volume, passive=True).list_live(), cache_dir=tmp_path / "r0")
        shown = next(r.worker for r in rows or [] if r.number == 0)
        assert shown is not None and f"pod {victim.id}" in shown and "NVIDIA RTX A5000" in shown
        assert f"warm worker w{launch.worker}" in shown and "spot" in shown and "$0.140/h" in shown
        fake.preempt(victim.id)
    finally:
        thread.join(timeout=120)
    assert not thread.is_alive()

    trials = load_trials(config, tmp_path / "reader")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert trials[0].user_attrs["attempts"] == 2 and trials[0].user_attrs["preemptions"] == 1
    resumed = drain(volume, layout.events(0, 1))
    assert resumed[0].type == "start" and resumed[0].resume_step >= 3
    _assert_curves_exact(config, trials)
    assert _live_pods(fake) == []  # no pod outlives its study
    pods = fake.pods(include_terminated=True)
    # Pods are warm workers, never two with one name: at most one per slot, plus one for the preemption.
    assert len({p.name for p in pods}) == len(pods) <= 2 + 1
    assert all(parse_worker_pod_name("pods", p.name) is not None for p in pods)
    assert all(p.restarts == 0 for p in pods)  # no finished attempt ran again
    for pod in pods:
        assert set(pod.env) == {"HPO_STUDY", "HPO_WORKER", "HPO_VOLUME", "HPO_WORKER_POLL", "HPO_WORKER_IDLE_LIMIT"}
        assert pod.env["HPO_VOLUME"] == "/workspace"
        assert pod.billed_seconds > 0


def test_one_pod_per_attempt_when_workers_are_not_reused(fake: FakeRunPod, project: Path, tmp_path: Path) -> None:
    studies = make_workspace(project, pace=0.05, max_step=3, trials=3, concurrency=2, reuse=False)
    config = study_config(studies, "pods")
    build_controller(config, cache_dir=tmp_path / "cache").run()
    trials = load_trials(config, tmp_path / "reader")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    pods = fake.pods(include_terminated=True)
    assert sorted(p.name for p in pods) == sorted(pod_name("pods", AttemptRef(n, 0)) for n in range(3))
    assert all(set(p.env) == {"HPO_STUDY", "HPO_TRIAL", "HPO_ATTEMPT", "HPO_VOLUME"} for p in pods)
    assert _live_pods(fake) == []


@pytest.mark.slow
def test_a_sold_out_gpu_type_falls_back_and_a_sold_out_study_queues(fake: FakeRunPod, project: Path, tmp_path: Path) -> None:
    studies = make_workspace(project, pace=0.05, max_step=3, trials=2, concurrency=2)
    config = study_config(studies, "pods")
    fake.set_capacity("NVIDIA RTX A5000", 0)
    fake.set_capacity("NVIDIA RTX A4000", 1)
    controller = build_controller(config, cache_dir=tmp_path / "cache")
    thread = threading.Thread(target=controller.run)
    thread.start()
    try:
        wait_for(lambda: len(fake.pods(include_terminated=True)) == 1, 60, "the first pod")
        wait_for(lambda: any(run.queued_until is not None for run in list(controller.runs.values())), 30, "a queued trial")
        queued = [t for t in load_trials(config, tmp_path / "reader") if t.user_attrs.get("queued")]
        assert len(queued) == 1
        fake.set_capacity("NVIDIA RTX A5000", None)
    finally:
        thread.join(timeout=120)
    trials = load_trials(config, tmp_path / "reader2")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert sorted(p.gpu_type for p in fake.pods(include_terminated=True)) == ["NVIDIA RTX A4000", "NVIDIA RTX A5000"]
    assert _live_pods(fake) == []


@pytest.mark.slow
def test_create_then_500_never_makes_a_second_pod(fake: FakeRunPod, project: Path, tmp_path: Path) -> None:
    studies = make_workspace(project, pace=0.05, max_step=3, trials=2, concurrency=1, spot="false")
    config = study_config(studies, "pods")
    fake.inject_fault("create_then_500", times=1)
    build_controller(config, cache_dir=tmp_path / "cache").run()
    pods = fake.pods(include_terminated=True)
    # One warm worker ran both trials: the create that answered 500 had made it, and was not made again.
    assert [p.name for p in pods] == [worker_pod_name("pods", 0)]
    assert all(not p.spot for p in pods)
    assert [t.state for t in load_trials(config, tmp_path / "reader")] == [TrialState.COMPLETE] * 2
    assert _live_pods(fake) == []


@pytest.mark.slow
def test_an_exhausted_balance_stops_launching_and_leaves_trials_resumable(
    fake: FakeRunPod, project: Path, tmp_path: Path
) -> None:
    studies = make_workspace(project, pace=0.05, max_step=3, trials=2, concurrency=1, spot="false")
    config = study_config(studies, "pods")
    fake.set_balance(0.0)
    summary = build_controller(config, cache_dir=tmp_path / "cache").run()
    assert summary.stopped and "balance" in summary.stopped.lower()
    assert fake.pods(include_terminated=True) == []
    fake.set_balance(100.0)
    summary = build_controller(config, cache_dir=tmp_path / "cache").run()
    assert summary.stopped is None and summary.complete == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (("data_centers: [EU-RO-1]", "data_centers: [US-KS-2]"), "dataCenterId"),
        (("image: ghcr.io/example/hpo-trial:test", "image: ghcr.io/Example/Trial::x"), "imageName"),
    ],
    ids=["volume-in-another-data-center", "bad-image"],
)
def test_a_request_runpod_refuses_is_a_clear_error(
    fake: FakeRunPod, project: Path, tmp_path: Path, edit: tuple[str, str], field: str
) -> None:
    studies = make_workspace(project, trials=1, concurrency=1)
    text = studies.read_text().replace(*edit)
    if field == "dataCenterId":
        text = text.replace("data_center: EU-RO-1", "data_center: US-KS-2")
    studies.write_text(text)
    env = {**os.environ, "HPO_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "hpo", "run", "--study", "pods", "--studies", str(studies)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "study 'pods'" in result.stderr and field in result.stderr
    assert API_KEY not in result.stderr


@pytest.mark.slow
def test_a_killed_controller_adopts_live_pods_and_cleanup_removes_strays(
    fake: FakeRunPod, project: Path, tmp_path: Path
) -> None:
    # Warm workers left without a controller end themselves once idle: after 2 s here.
    studies = make_workspace(project, pace=0.15, max_step=8, trials=3, concurrency=2, idle_limit=2)
    config = study_config(studies, "pods")
    volume = study_volume(config)
    layout = StudyLayout(config.name)
    env = {**os.environ, "HPO_CACHE_DIR": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "hpo", "run", "--study", "pods", "--studies", str(studies)]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: count_events(volume, layout.events(1, 0), "report") >= 2, 90, "trial 1 reports")
    first.send_signal(signal.SIGKILL)
    first.wait()
    # With no controller alive, a worker whose attempt ends still stops billing: idle past its limit, the
    # agent ends its own pod.
    wait_for(lambda: count_events(volume, layout.events(1, 0), "done") == 1, 60, "trial 1 to finish alone")
    launch = read_launch(volume, layout.launch(1, 0))
    assert launch is not None and launch.worker is not None
    worker = worker_pod_name("pods", launch.worker)
    wait_for(
        lambda: all(p.status == "TERMINATED" for p in fake.pods(include_terminated=True) if p.name == worker),
        60, "trial 1's worker pod to end itself once idle",
    )

    # A stray: a pod named like an attempt that no running trial has.
    api = RunPodApi(API_KEY, rest_url=fake.url, graphql_base=fake.url)
    stray = api.create_pod(
        PodRequest(name=pod_name("pods", AttemptRef(1, 7)), image="x", gpu_type="NVIDIA RTX A4000", env={"TEST_STRAY_POD": "1"})
    )
    dry = subprocess.run([sys.executable, "-m", "hpo", "cleanup", "--study", "pods", "--studies", str(studies), "--dry-run"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert dry.returncode == 0 and stray.id in dry.stdout and "would terminate" in dry.stdout
    assert stray.id in {p.id for p in _live_pods(fake)}
    done = subprocess.run([sys.executable, "-m", "hpo", "cleanup", "--study", "pods", "--studies", str(studies)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and f"terminated {stray.id}" in done.stdout
    assert stray.id not in {p.id for p in _live_pods(fake)}

    second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180)
    assert second.returncode == 0, second.stderr
    assert "adopted" in second.stderr
    trials = load_trials(config, tmp_path / "reader")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.user_attrs["attempts"] == 1 for t in trials)  # adopted, not relaunched
    _assert_curves_exact(config, trials)
    assert _live_pods(fake) == []
