"""A warm worker (``python -m hpo.agent`` with ``HPO_WORKER``), as a real process driven by its assignments.

Each test starts one worker on a folder volume holding a code snapshot and
trial specs, writes assignments as the controller would, and waits (polling
files, with generous deadlines) for what the worker logs and what its
attempts write. The objectives append a line to a marker file each time their
module's top level runs, with the process's pid and its parent's, so a test
can tell where the module was imported: in the fork server (the worker's
child) rather than in each attempt.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from hpo.code import publish_objectives
from hpo.events import FINAL_TYPES, Event, StartEvent, drain
from hpo.layout import StudyLayout
from hpo.pool import (
    WORKER_LOG_ENTRY,
    Assignment,
    BootEntry,
    EndEntry,
    ExitEntry,
    StartEntry,
    assignment_key,
    encode_entry,
    worker_log_key,
)
from hpo.spec import TrialSpec
from hpo.volume import DirectoryVolume

LAYOUT = StudyLayout("s")
DEADLINE = 60.0  # seconds: generous, for a loaded CI machine; a passing test takes a fraction of it

_MARK = """
    import os
    import time
    from pathlib import Path

    _marker = os.environ.get("HPO_TEST_MARKER")
    if _marker:
        with open(_marker, "a") as _f:
            _f.write(f"{__name__} {os.getpid()} {os.getppid()}\\n")
"""

OBJECTIVES = {
    "quick": _MARK
    + """
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        print(f"quick objective in pid {os.getpid()}", flush=True)
        trial.report(x, 1)
        return x * 2
    """,
    "waits": _MARK
    + """
    def objective(trial):
        trial.report(0.5, 1)
        release = Path(os.environ["HPO_TEST_RELEASE"])
        while not release.exists():
            time.sleep(0.02)
        return 1.0
    """,
    "cuda_at_import": _MARK
    + """
    import sys
    import types

    # What `torch.zeros(1, device="cuda")` at the top of a module leaves behind, without a GPU.
    _torch = types.ModuleType("torch")
    _torch.cuda = types.SimpleNamespace(is_initialized=lambda: True)
    sys.modules["torch"] = _torch

    def objective(trial):
        return 1.0
    """,
}
QUICK, WAITS, OTHER_CODE, CUDA = 0, 1, 2, 3


@dataclass
class WorkerRun:
    """One worker process and the paths its test reads."""

    proc: subprocess.Popen[bytes]
    volume: DirectoryVolume
    root: Path
    marker: Path
    release: Path
    output: Path
    seq: int = 0

    def assign(self, action: str, trial: int | None = None, attempt: int | None = None) -> int:
        """Write the next assignment, as the controller does (whole, with a grown seq); its seq."""
        self.seq += 1
        order = Assignment(worker=1, seq=self.seq, action=action, trial=trial, attempt=attempt)  # type: ignore[arg-type]
        self.volume.write_json(assignment_key("s", 1), order.model_dump())
        return self.seq

    def log(self) -> list[BootEntry | StartEntry | EndEntry | ExitEntry]:
        try:
            data = self.volume.read_bytes(worker_log_key("s", 1))
        except Exception:  # noqa: BLE001  not written yet
            return []
        return [WORKER_LOG_ENTRY.validate_json(line) for line in data.splitlines() if line.strip()]

    def ends(self) -> list[EndEntry]:
        return [e for e in self.log() if isinstance(e, EndEntry)]

    def events(self, trial: int, attempt: int = 0) -> list[Event]:
        return drain(self.volume, LAYOUT.events(trial, attempt))

    def final(self, trial: int, attempt: int = 0) -> Event | None:
        finals = [e for e in self.events(trial, attempt) if e.type in FINAL_TYPES]
        return finals[-1] if finals else None

    def pid(self, trial: int, attempt: int = 0) -> int:
        """The attempt's process id, as its start event says."""
        (start,) = [e for e in self.events(trial, attempt) if isinstance(e, StartEvent)]
        return start.pid

    def marks(self) -> list[tuple[str, int, int]]:
        if not self.marker.exists():
            return []
        return [
            (m, int(pid), int(ppid)) for m, pid, ppid in (line.split() for line in self.marker.read_text().splitlines())
        ]

    def wait_for(self, what: str, condition: Callable[[], Any]) -> Any:
        """Poll ``condition`` until it is truthy (its value), failing after :data:`DEADLINE` with the worker's output."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited ({self.proc.returncode}) before {what}:\n{self.text()}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; worker output:\n{self.output.read_text()}")

    def exit_code(self) -> int:
        return self.proc.wait(DEADLINE)

    def text(self) -> str:
        return self.output.read_text()


def _publish(volume: DirectoryVolume, folder: Path, objectives: Mapping[str, str]) -> str:
    folder.mkdir(parents=True)
    for name, code in objectives.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(code))
    return publish_objectives(volume, "s", folder)


def _spec(volume: DirectoryVolume, trial: int, objective: str, code: str) -> None:
    TrialSpec(
        study="s", trial=trial, objective=objective, params={"x": 0.25},
        search_space={"x": {"type": "float", "low": 0, "high": 1}}, max_step=5, code=code,
    ).write(volume, LAYOUT.spec(trial))  # fmt: skip


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerRun]]:
    """Start worker 1 of study ``s`` (after ``before(volume)`` prepared its volume); every one is killed at the end."""
    volume = DirectoryVolume(tmp_path / "vol")
    code = _publish(volume, tmp_path / "objectives", OBJECTIVES)
    other = _publish(
        volume,
        tmp_path / "other" / "objectives",
        {"quick": textwrap.dedent(OBJECTIVES["quick"]) + "\n# another snapshot\n"},
    )
    _spec(volume, QUICK, "quick", code)
    _spec(volume, WAITS, "waits", code)
    _spec(volume, OTHER_CODE, "quick", other)
    _spec(volume, CUDA, "cuda_at_import", code)
    started: list[subprocess.Popen[bytes]] = []

    def start(
        *, idle_limit: float = 600.0, before: Callable[[DirectoryVolume], None] | None = None, seq: int = 0
    ) -> WorkerRun:
        if before is not None:
            before(volume)
        output = tmp_path / f"worker{len(started)}.out"
        env = {
            **os.environ, "HPO_STUDY": "s", "HPO_VOLUME": str(volume.root), "HPO_WORKER": "1",
            "HPO_WORKER_POLL": "0.05", "HPO_WORKER_IDLE_LIMIT": str(idle_limit),
            "HPO_CACHE_DIR": str(tmp_path / "cache"), "HPO_TEST_MARKER": str(tmp_path / "marker.txt"),
            "HPO_TEST_RELEASE": str(tmp_path / "release"), "PYTHONDONTWRITEBYTECODE": "1",
        }  # fmt: skip
        env.pop("RUNPOD_POD_ID", None)
        with open(output, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hpo.agent"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        started.append(proc)
        return WorkerRun(proc, volume, tmp_path, tmp_path / "marker.txt", tmp_path / "release", output, seq)

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_attempts_run_one_after_another_forked_from_a_warm_fork_server(
    start_worker: Callable[..., WorkerRun],
) -> None:
    run = start_worker()
    first = run.assign("run", QUICK, 0)
    run.wait_for("the first attempt's end", lambda: run.ends())
    second = run.assign("run", QUICK, 1)
    run.wait_for("the second attempt's end", lambda: len(run.ends()) == 2)
    run.assign("exit")
    assert run.exit_code() == 0, run.text()

    log = run.log()
    assert [type(e).__name__ for e in log] == ["BootEntry", *["StartEntry", "EndEntry"] * 2, "ExitEntry"]
    boot, start1, end1, start2, end2, exit_ = log
    assert isinstance(boot, BootEntry) and boot.pid == run.proc.pid
    assert (start1.seq, end1.seq, start2.seq, end2.seq) == (first, first, second, second)  # type: ignore[union-attr]
    assert (end1.exit_code, end2.exit_code) == (0, 0)  # type: ignore[union-attr]
    assert isinstance(exit_, ExitEntry) and exit_.reason == "assigned"
    for attempt in (0, 1):
        final = run.final(QUICK, attempt)
        assert final is not None and final.type == "done" and final.value == 0.5
        # Each attempt's output went to its own log.txt, as a single-attempt agent's does.
        pid = run.pid(QUICK, attempt)
        assert f"quick objective in pid {pid}" in run.volume.local_path(LAYOUT.log(QUICK, attempt)).read_text()
    # The objective's module was imported in the fork server: the worker's own child, which is no attempt.
    attempt_pids = {run.pid(QUICK, a) for a in (0, 1)}
    server = [(pid, ppid) for name, pid, ppid in run.marks() if name == "objectives.quick" and ppid == run.proc.pid]
    assert len(server) == 1 and server[0][0] not in attempt_pids, run.marks()
    assert not psutil.pid_exists(server[0][0])  # the worker stopped and reaped its fork server before exiting
    assert "fork server pid" in run.text() and "objectives.quick" in run.text()


def test_an_attempt_does_not_run_the_preloaded_module_again(start_worker: Callable[..., WorkerRun]) -> None:
    run = start_worker()
    run.assign("run", QUICK, 0)
    run.wait_for("the attempt's end", lambda: run.ends())
    attempt_pid = run.pid(QUICK, 0)
    assert [pid for name, pid, _ in run.marks() if pid == attempt_pid] == []


def test_another_snapshot_runs_cold_and_a_stopped_attempt_leaves_the_worker_running(
    start_worker: Callable[..., WorkerRun],
) -> None:
    run = start_worker()
    run.assign("run", WAITS, 0)
    run.wait_for("the attempt's report", lambda: any(e.type == "report" for e in run.events(WAITS)))
    run.volume.write_json(LAYOUT.control(WAITS), {"action": "prune"})
    run.assign("stop", WAITS, 0)
    (end,) = run.wait_for("the stopped attempt's end", run.ends)
    assert end.exit_code == 143 and run.final(WAITS).type == "pruned"  # type: ignore[union-attr]
    run.assign("run", OTHER_CODE, 0)  # another code snapshot: a cold `python -m hpo.agent`
    run.wait_for("the cold attempt's end", lambda: len(run.ends()) == 2)
    assert run.ends()[1].exit_code == 0 and run.final(OTHER_CODE).type == "done"  # type: ignore[union-attr]
    assert "running it cold" in run.text()
    run.assign("exit")
    assert run.exit_code() == 0


def test_sigterm_stops_the_running_attempt_logs_its_end_and_exits_143(start_worker: Callable[..., WorkerRun]) -> None:
    run = start_worker()
    run.assign("run", WAITS, 0)
    run.wait_for("the attempt's report", lambda: any(e.type == "report" for e in run.events(WAITS)))
    run.proc.send_signal(signal.SIGTERM)
    assert run.exit_code() == 143, run.text()
    *_, end, gone = run.log()
    assert isinstance(end, EndEntry) and end.exit_code == 143
    # ... then its exit: no controller may hand a worker that is going away another attempt.
    assert isinstance(gone, ExitEntry) and gone.reason == "sigterm"
    assert run.final(WAITS).type == "preempted"  # type: ignore[union-attr]


def test_a_restart_closes_the_attempt_the_dead_container_ran_and_never_runs_it_again(
    start_worker: Callable[..., WorkerRun],
) -> None:
    def died_under_an_attempt(volume: DirectoryVolume) -> None:
        key = worker_log_key("s", 1)
        volume.append_bytes(
            key, encode_entry(BootEntry(pid=1)) + encode_entry(StartEntry(seq=1, trial=QUICK, attempt=0))
        )
        volume.write_json(
            assignment_key("s", 1), Assignment(worker=1, seq=1, action="run", trial=QUICK, attempt=0).model_dump()
        )

    run = start_worker(before=died_under_an_attempt, seq=1, idle_limit=0.2)
    assert run.exit_code() == 0, run.text()  # nothing to do, no controller: it ends itself
    log = run.log()
    assert [type(e).__name__ for e in log] == ["BootEntry", "StartEntry", "BootEntry", "EndEntry", "ExitEntry"]
    assert log[3] == EndEntry(seq=1, trial=QUICK, attempt=0, exit_code=-9, t=log[3].t)
    assert isinstance(log[4], ExitEntry) and log[4].reason == "idle"
    assert run.events(QUICK) == []  # not run again


def test_idle_with_a_live_controller_the_worker_waits_for_its_lease_to_lapse(
    start_worker: Callable[..., WorkerRun],
) -> None:
    expires_at = time.time() + 1.0

    def controller(volume: DirectoryVolume) -> None:
        volume.write_json(LAYOUT.lease, {"id": "c0ffee", "host": "elsewhere", "pid": 4242, "expires_at": expires_at})

    run = start_worker(before=controller, idle_limit=0.05)
    assert run.exit_code() == 0, run.text()
    *_, exit_ = run.log()
    assert isinstance(exit_, ExitEntry) and exit_.reason == "idle" and exit_.t >= expires_at


def test_a_malformed_assignment_is_skipped_with_one_warning_and_cuda_at_import_fails_by_name(
    start_worker: Callable[..., WorkerRun],
) -> None:
    run = start_worker(before=lambda volume: volume.write_bytes(assignment_key("s", 1), b'{"worker": 1, "seq": "x'))
    run.wait_for("the warning", lambda: "not a valid assignment" in run.text())
    run.volume.write_bytes(assignment_key("s", 1), json.dumps({"worker": 1, "seq": 1, "action": "dance"}).encode())
    run.wait_for("the second warning", lambda: run.text().count("not a valid assignment") == 2)
    run.seq = 1
    run.assign("run", CUDA, 0)  # its module initialises CUDA (a stand-in for it) when the fork server imports it
    (end,) = run.wait_for("the attempt's end", run.ends)
    run.assign("exit")
    assert run.exit_code() == 0
    assert run.text().count("not a valid assignment") == 2  # each said once, however many polls it lasted
    final = run.final(CUDA)
    assert end.exit_code == 1 and final is not None and final.type == "error"
    assert "objectives/cuda_at_import.py initialises CUDA when it is imported" in final.message
