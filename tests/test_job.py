"""``hpo job``: one-off commands on a worker of the study's backend (a pod of the fake RunPod, a local process).

Fast tests drive the parts through seams: the job's files, the runner in this
process on a folder volume (its command a real, instant ``sh``), and the
follower over a scripted backend and a manual clock. The slow ones run the
real thing on both backends: ``hpo job`` starts a worker that runs the agent,
which runs the command, writes the log and status on the volume, and ends its
worker; nothing may be left running, and no controller or ``hpo cleanup`` may
take a job's worker for a trial's.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fake_runpod_support.processes import started_fake
from memory_volume import MemoryVolume
from studyfiles import VOLUME_ID, hpo_in_process, make_workspace, study_config, study_volume, wait_for

from hpo.agent._job import JobAddress, command_env, run_job
from hpo.backends import AttemptRef, backend_plugin
from hpo.backends.local import LocalBackend
from hpo.backends.runpod import job_pod_name, parse_job_pod_name, parse_pod_name, pod_name
from hpo.cleanup import cleanup
from hpo.config import StudyConfig
from hpo.controller import build_controller
from hpo.errors import ApiUnavailableError, ConfigError
from hpo.fake_runpod import FakeRunPod
from hpo.jobs import (
    EXIT_LOST,
    EXITED,
    LOST,
    NOT_STARTED,
    RUNNING,
    JobFileError,
    JobFollower,
    JobRequest,
    JobSpec,
    JobStatus,
    JobWorker,
    is_job_id,
    job_env,
    job_rows,
    new_job_id,
)
from hpo.layout import StudyLayout
from hpo.volume import DirectoryVolume, Volume

STUDY = "s"
JOB = "20260821-142233-a3f9"
SECRET = "s3cr3t-never-to-leak-0451"

# -- names and files ---------------------------------------------------------------------


def test_job_ids_sort_by_start_and_name_nothing_else() -> None:
    first, second = new_job_id(1_790_000_000.0), new_job_id(1_790_000_001.0)
    assert is_job_id(first) and is_job_id(second) and first < second
    assert first.startswith("20260921-")
    for bad in ("", "../x", "20260821-142233-A3F9", "20260821-142233-a3f9/..", None, 3):
        assert not is_job_id(bad)


@pytest.mark.parametrize("study", ["s", "f5-lr", "f5-lr-1-0", "a-20260821"])
def test_job_pods_and_trial_pods_are_never_read_as_each_other(study: str) -> None:
    job_pod = job_pod_name(study, JOB)
    assert parse_job_pod_name(study, job_pod) == JOB
    assert parse_pod_name(study, job_pod) is None  # the controller's listing never sees a job pod
    for other in ("s", "f5", "f5-lr", "f5-lr-1", "a"):
        if other != study:
            assert parse_job_pod_name(other, job_pod) is None
            assert parse_pod_name(other, job_pod) is None
    trial_pod = pod_name(study, AttemptRef(1, 0))
    assert parse_job_pod_name(study, trial_pod) is None


def test_a_job_worker_gets_only_its_address() -> None:
    assert job_env(STUDY, JOB, "/workspace") == {"HPO_JOB": JOB, "HPO_JOB_STUDY": STUDY, "HPO_VOLUME": "/workspace"}


def test_job_files_round_trip_and_junk_is_one_line() -> None:
    volume = MemoryVolume()
    spec = JobSpec(JOB, STUDY, ("python", "-c", "print(1)"), None, 5.0)
    spec.write(volume)
    assert JobSpec.read(volume, STUDY, JOB) == spec
    assert JobStatus.read(volume, STUDY, JOB) is None
    JobStatus(EXITED, 3, 1.0, 2.0).write(volume, STUDY, JOB)
    assert JobStatus.read(volume, STUDY, JOB) == JobStatus(EXITED, 3, 1.0, 2.0)
    status_key = StudyLayout(STUDY).job_status(JOB)
    for junk in (b"{", b"[]", b'{"state": "done", "exit_code": 0}', b'{"state": "exited", "exit_code": 300}',
                 b'{"state": "exited"}', b'{"state": "running", "exit_code": 1}'):  # fmt: skip
        volume.write_bytes(status_key, junk)
        with pytest.raises(JobFileError, match="status.json"):
            JobStatus.read(volume, STUDY, JOB)
    spec_key = StudyLayout(STUDY).job_spec(JOB)
    for bad_spec in ({"id": JOB, "study": STUDY, "argv": []}, {"id": JOB, "study": STUDY, "argv": "ls"},
                     {"id": "x", "study": STUDY, "argv": ["ls"]}):  # fmt: skip
        volume.write_bytes(spec_key, json.dumps(bad_spec).encode())
        with pytest.raises(JobFileError, match="job.json"):
            JobSpec.read(volume, STUDY, JOB)


# -- the runner, in this process ---------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> DirectoryVolume:
    return DirectoryVolume(tmp_path / "volume")


def _run(volume: DirectoryVolume, argv: list[str], env: dict[str, str] | None = None) -> JobStatus:
    JobSpec(JOB, STUDY, tuple(argv)).write(volume)
    address = JobAddress(JOB, STUDY, str(volume.root))
    return run_job(address, volume, env or {"PATH": "/usr/bin:/bin"}, cache_dir=volume.root.parent / "cache")


def _log(volume: Volume) -> str:
    return volume.read_bytes(StudyLayout(STUDY).job_log(JOB)).decode()


def test_the_runner_runs_the_command_in_the_volume_and_records_its_exit_code(folder: DirectoryVolume) -> None:
    status = _run(folder, ["sh", "-c", "echo out; echo err >&2; pwd > where.txt; exit 3"])
    assert (status.state, status.exit_code) == (EXITED, 3)
    assert JobStatus.read(folder, STUDY, JOB) == status
    assert (folder.root / "where.txt").read_text().strip() == str(folder.root)
    log = _log(folder)
    assert "out\n" in log and "err\n" in log and "exited with code 3" in log


def test_a_command_that_cannot_start_is_127_and_says_why(folder: DirectoryVolume) -> None:
    status = _run(folder, ["no-such-command-anywhere"])
    assert (status.state, status.exit_code) == (NOT_STARTED, 127)
    assert "no-such-command-anywhere" in status.detail and "no-such-command-anywhere" in _log(folder)


def test_a_job_runs_at_most_once(folder: DirectoryVolume) -> None:
    JobSpec(JOB, STUDY, ("sh", "-c", "echo again >> runs.txt")).write(folder)
    JobStatus(EXITED, 0, 1.0, 2.0).write(folder, STUDY, JOB)  # ended before: its worker restarted since
    address = JobAddress(JOB, STUDY, str(folder.root))
    assert run_job(address, folder, {"PATH": "/usr/bin:/bin"}) == JobStatus(EXITED, 0, 1.0, 2.0)
    JobStatus(RUNNING, None, 1.0).write(folder, STUDY, JOB)  # the container restarted under the command
    lost = run_job(address, folder, {"PATH": "/usr/bin:/bin"})
    assert (lost.state, lost.exit_code) == (LOST, EXIT_LOST) and JobStatus.read(folder, STUDY, JOB) == lost
    assert not (folder.root / "runs.txt").exists()


def test_the_command_gets_no_key_and_imports_the_studys_objectives(folder: DirectoryVolume, tmp_path: Path) -> None:
    from hpo.code import publish_objectives

    objectives = tmp_path / "objectives"
    objectives.mkdir()
    (objectives / "prep.py").write_text("print('prep ran')\n")
    sha = publish_objectives(folder, STUDY, objectives)
    JobSpec(JOB, STUDY, (sys.executable, "-c", "import json, os, objectives.prep; print(json.dumps(dict(os.environ)))"),
            sha).write(folder)  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "RUNPOD_API_KEY": SECRET, "RUNPOD_POD_ID": "pod1", **job_env(STUDY, JOB, "/x")}
    status = run_job(JobAddress(JOB, STUDY, str(folder.root)), folder, env, cache_dir=tmp_path / "cache")
    assert status.exit_code == 0, _log(folder)
    log = _log(folder)
    assert "prep ran" in log and SECRET not in log
    seen = json.loads(next(line for line in log.splitlines() if line.startswith("{")))
    assert "RUNPOD_API_KEY" not in seen and "HPO_JOB" not in seen and "HPO_JOB_STUDY" not in seen
    assert seen["RUNPOD_POD_ID"] == "pod1" and seen["PYTHONPATH"].startswith(str(tmp_path / "cache"))
    assert command_env({"PYTHONPATH": "/a"}, ["/snap"])["PYTHONPATH"] == "/snap:/a"


# -- the follower, over a scripted backend -----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class ScriptedJobs:
    """A backend's job side: the workers it lists are the test's to set; a listing may fail."""

    name = "scripted"

    def __init__(self) -> None:
        self.workers: list[JobWorker] = [JobWorker(JOB, "w1", "running")]
        self.failing = False
        self.terminated: list[str] = []

    def launch_job(self, request: JobRequest) -> JobWorker:
        raise AssertionError("not launched here")

    def list_jobs(self) -> list[JobWorker]:
        if self.failing:
            raise ApiUnavailableError("GET /v2/pods: 503 (scripted)")
        return list(self.workers)

    def terminate_job(self, worker: JobWorker) -> None:
        self.terminated.append(worker.id)


def _follower(volume: Volume, backend: ScriptedJobs, clock: Clock, out: list[bytes]) -> JobFollower:
    return JobFollower(
        volume, backend, STUDY, JOB, out.append, poll_interval=1.0, check_interval=5.0, clock=clock, sleep=clock.sleep
    )


def test_the_follower_prints_the_log_as_it_grows_and_returns_the_final_status() -> None:
    volume, backend, clock = MemoryVolume(), ScriptedJobs(), Clock()
    out: list[bytes] = []
    log_key = StudyLayout(STUDY).job_log(JOB)
    script = iter([b"one\n", b"t\xc3", b"\xa9two\n", b""])

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        piece = next(script, b"")
        if piece:
            volume.append_bytes(log_key, piece)
        elif clock.now > 3:  # the runner writes its status after the last line
            JobStatus(EXITED, 4, 0.0, clock.now).write(volume, STUDY, JOB)

    follower = _follower(volume, backend, clock, out)
    follower.sleep = sleep
    assert follower.follow().exit_code == 4
    assert b"".join(out) == "one\ntétwo\n".encode()


def test_a_worker_gone_without_a_status_is_lost_after_two_listings() -> None:
    volume, backend, clock = MemoryVolume(), ScriptedJobs(), Clock()
    out: list[bytes] = []
    backend.workers = [JobWorker(JOB, "pod9", "error", live=False)]
    status = _follower(volume, backend, clock, out).follow()
    assert (status.state, status.exit_code) == (LOST, EXIT_LOST)
    assert "pod9 is error" in status.detail
    assert clock.now >= 2 * 5.0  # one missed listing is not enough


def test_a_status_written_as_the_worker_ends_wins_over_lost() -> None:
    volume, backend, clock = MemoryVolume(), ScriptedJobs(), Clock()
    out: list[bytes] = []
    backend.workers = []

    def list_jobs() -> list[JobWorker]:
        if clock.now >= 10:  # the second listing: the runner wrote its status, then its pod ended
            JobStatus(EXITED, 0, 0.0, clock.now).write(volume, STUDY, JOB)
        return []

    backend.list_jobs = list_jobs  # type: ignore[method-assign]
    assert _follower(volume, backend, clock, out).follow() == JobStatus(EXITED, 0, 0.0, 10.0)


def test_an_api_outage_while_following_is_ridden_out(caplog: pytest.LogCaptureFixture) -> None:
    volume, backend, clock = MemoryVolume(), ScriptedJobs(), Clock()
    out: list[bytes] = []
    backend.failing = True

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now >= 30:
            JobStatus(EXITED, 0, 0.0, clock.now).write(volume, STUDY, JOB)

    follower = _follower(volume, backend, clock, out)
    follower.sleep = sleep
    assert follower.follow().state == EXITED
    assert sum("503" in r.getMessage() for r in caplog.records) == 1  # a warning a minute, not one per poll


def test_the_list_shows_each_job_once_with_its_state_and_workers() -> None:
    volume, backend = MemoryVolume(), ScriptedJobs()
    ended, starting = "20260821-100000-0001", "20260821-110000-0002"
    JobSpec(ended, STUDY, ("python", "prep.py", "a b")).write(volume)
    JobStatus(EXITED, 3, 1.0, 2.0).write(volume, STUDY, ended)
    JobSpec(JOB, STUDY, ("true",)).write(volume)  # no status, no worker: its worker died before a word
    volume.write_bytes(StudyLayout(STUDY).job_log(JOB), b"x")
    backend.workers = [JobWorker(ended, "pod1", "running"), JobWorker(starting, "pod2", "provisioning")]
    rows = {row.id: row for row in job_rows(volume, backend, STUDY)}
    assert list(rows) == [ended, starting, JOB]
    assert (rows[ended].command, rows[ended].state, rows[ended].exit_code) == ("python prep.py 'a b'", EXITED, 3)
    assert [w.id for w in rows[ended].workers] == ["pod1"]  # outlived its job: the list says --cancel
    assert (rows[starting].command, rows[starting].state) == ("", "starting")
    assert rows[JOB].state == "ended without a status"


# -- the command line's own refusals ------------------------------------------------------


def test_hpo_job_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path)
    run = lambda *args: hpo_in_process("job", "--studies", str(studies), *args, cwd=tmp_path)  # noqa: E731
    no_command = run("--study", "steady")
    assert no_command.returncode == 2 and "no command to run" in no_command.stderr
    listed_with_command = run("--study", "steady", "--list", "--", "ls")
    assert listed_with_command.returncode == 2 and "only to start a job" in listed_with_command.stderr
    unknown = run("--study", "steady", "--follow", JOB)
    assert unknown.returncode == 2 and f"has no job '{JOB}'" in unknown.stderr
    not_an_id = run("--study", "steady", "--cancel", "../x")
    assert not_an_id.returncode == 2 and "is not a job id" in not_an_id.stderr
    gpu_locally = run("--study", "steady", "--gpu", "NVIDIA RTX A5000", "--", "true")
    assert gpu_locally.returncode == 2 and "local backend" in gpu_locally.stderr
    assert run("--study", "steady", "--list").stdout == "study steady: no jobs\n"


# -- the real thing, on each backend ------------------------------------------------------

STUDY_OF = {"local": "steady", "runpod": "pods"}


@contextmanager
def _world(backend: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod | None]:
    """The backend's world: nothing for ``local``; for ``runpod`` the fake RunPod, the client pointed at it."""
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("AWS_SECRET_ACCESS_KEY", "RUNPOD_S3_SECRET_KEY"):  # a user's shell may hold them: none may leak
        monkeypatch.setenv(name, SECRET)
    if backend == "local":
        yield None
        return
    with started_fake(
        volumes={VOLUME_ID: project / "storage"}, volume_data_center="EU-RO-1", time_scale=20.0,
        provision_seconds=4.0, start_seconds=2.0, kill_grace_seconds=5.0, workdir=tmp_path / "fake",
        pod_command=[sys.executable, str(Path(__file__).parent / "pod_entry.py")],
    ) as fake:  # fmt: skip
        for name, value in fake.client_env().items():
            monkeypatch.setenv(name, value)
        yield fake
        for pod in fake.pods(include_terminated=True):
            assert pod.status == "TERMINATED", f"pod {pod.name} left {pod.status}"  # no leaked pod
            assert pod.restarts == 0  # the job ran once
            assert SECRET not in repr(pod.request) + repr(pod.env)


@pytest.fixture(params=["local", "runpod"])
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StudyConfig, FakeRunPod | None]]:
    project = tmp_path / "project"
    studies = make_workspace(project, pace=0.05, max_step=3, trials=2, concurrency=2, spot=False)
    with _world(request.param, project, tmp_path, monkeypatch) as fake:
        config = study_config(studies, STUDY_OF[request.param])
        yield config, fake
        backend = backend_plugin(config.compute.backend).build(config, study_volume(config))
        wait_for(lambda: not any(w.live for w in backend.list_jobs()), 30, "every job worker to end")
        assert not any(SECRET.encode() in p.read_bytes() for p in (project / "storage").rglob("*") if p.is_file())


def _hpo_job(config: StudyConfig, *args: str) -> object:
    return hpo_in_process("job", "--studies", str(config.source), "--study", config.name, *args, cwd=config.source.parent)


@pytest.mark.slow
def test_a_job_writes_on_the_volume_prints_its_output_and_exits_with_its_code(
    world: tuple[StudyConfig, FakeRunPod | None],
) -> None:
    config, fake = world
    volume = study_volume(config)
    script = "import pathlib; pathlib.Path('prepared.txt').write_text('ready'); print('prepared')"
    done = _hpo_job(config, "--", sys.executable, "-c", script)
    assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
    assert "prepared\n" in done.stdout  # type: ignore[attr-defined]
    assert volume.read_bytes("prepared.txt") == b"ready"  # the command ran in the volume's folder (/workspace)
    failed = _hpo_job(config, "--", sys.executable, "-c", "print('failing'); raise SystemExit(3)")
    assert failed.returncode == 3 and "failing" in failed.stdout  # type: ignore[attr-defined]
    jobs = sorted(info.key for info in volume.list(StudyLayout(config.name).jobs_dir) if info.key.endswith("status.json"))
    # Two jobs started within one second: their ids' random tails decide their order.
    assert sorted(json.loads(volume.read_bytes(k))["exit_code"] for k in jobs) == [0, 3]
    if fake is not None:
        pods = fake.pods(include_terminated=True)
        assert len(pods) == 2 and all(p.name.startswith(f"hpojob-{config.name}-") for p in pods)
        assert all(set(p.env) == {"HPO_JOB", "HPO_JOB_STUDY", "HPO_VOLUME"} for p in pods)
        assert not pods[0].spot


@pytest.mark.slow
def test_a_running_study_and_cleanup_leave_a_job_alone(
    world: tuple[StudyConfig, FakeRunPod | None], tmp_path: Path
) -> None:
    config, fake = world
    volume = study_volume(config)
    wait_gate = "import os, time\nwhile not os.path.exists('gate'):\n    time.sleep(0.05)\nprint('gate open')"
    started = _hpo_job(config, "--detach", "--", sys.executable, "-c", wait_gate)
    assert started.returncode == 0, started.stderr  # type: ignore[attr-defined]
    job_id = started.stdout.strip()  # type: ignore[attr-defined]
    backend = backend_plugin(config.compute.backend).build(config, volume, cache_dir=tmp_path / "cache")
    wait_for(lambda: (JobStatus.read(volume, config.name, job_id) or JobStatus("x")).state == RUNNING, 90,
             "the job's command to start")  # fmt: skip
    job_worker = next(w for w in backend.list_jobs() if w.job_id == job_id)

    controller = build_controller(config, cache_dir=tmp_path / "controller")
    thread = threading.Thread(target=controller.run)
    thread.start()
    try:
        # The study's warm workers (listed apart from attempt workers and jobs) run its trials.
        wait_for(lambda: backend.list_workers(), 90, "a trial's worker to run beside the job")
        assert all(handle.id != job_worker.id for handle in [*backend.list_live().values(), *backend.extras()])
        assert all(worker.id != job_worker.id for worker in [*backend.list_workers().values(), *backend.worker_extras()])
    finally:
        thread.join(timeout=180)
    assert not thread.is_alive()
    assert cleanup(config, volume, backend, dry_run=False) == []  # nothing of the job is a stray
    assert [w.id for w in backend.list_jobs() if w.live] == [job_worker.id]  # the job still runs
    if fake is not None:
        assert fake.pod(job_worker.id).status == "RUNNING"

    volume.write_bytes("gate", b"")  # the job's command ends; its worker ends itself, with nobody following
    wait_for(lambda: not any(w.live for w in backend.list_jobs()), 60, "the job's worker to end itself")
    status = JobStatus.read(volume, config.name, job_id)
    assert status is not None and (status.state, status.exit_code) == (EXITED, 0)
    followed = _hpo_job(config, "--follow", job_id)
    assert followed.returncode == 0 and "gate open" in followed.stdout  # type: ignore[attr-defined]


def test_a_job_pod_is_on_demand_on_the_first_gpu_type_with_capacity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    studies = make_workspace(project, spot=True)
    with _world("runpod", project, tmp_path, monkeypatch) as fake:
        assert fake is not None
        config = study_config(studies, "pods")  # spot: true, and gpu_types [RTX A5000, RTX A4000]
        backend = backend_plugin("runpod").build(config, study_volume(config), cache_dir=tmp_path / "cache")
        with pytest.raises(ConfigError, match="unknown GPU type 'RTX A5000'; did you mean 'NVIDIA RTX A5000'"):
            backend.launch_job(JobRequest(JOB, ("RTX A5000",)))
        fake.set_capacity("NVIDIA RTX A5000", 0)
        worker = backend.launch_job(JobRequest(JOB))
        try:
            pod = fake.pod(worker.id)
            assert (pod.name, pod.gpu_type, pod.spot) == (f"hpojob-pods-{JOB}", "NVIDIA RTX A4000", False)
            assert pod.env == {"HPO_JOB": JOB, "HPO_JOB_STUDY": "pods", "HPO_VOLUME": "/workspace"}
            assert [w.job_id for w in backend.list_jobs()] == [JOB] and backend.list_live() == {}
        finally:
            backend.terminate_job(worker)
        assert backend.list_jobs() == []


def test_the_local_backend_lists_only_its_own_studys_jobs(tmp_path: Path) -> None:
    backend = LocalBackend("other", DirectoryVolume(tmp_path))
    assert backend.list_jobs() == []
