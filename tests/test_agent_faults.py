"""The agent under volume faults: an infrastructure failure interrupts the attempt, it never fails the trial.

A volume whose operations start failing (VolumeError, or a raw OSError such
as ENOSPC) is injected where the agent takes its volume; the objectives run
from a real code snapshot on it. The last test fills a real file-size limit
(RLIMIT_FSIZE, the kernel's EFBIG: a disk full for this process) under the
real ``python -m hpo.agent``.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from agent_support import LAYOUT, keep_sigterm_handler, publish_trials  # noqa: F401  (an autouse fixture)

import hpo.agent.__main__ as agent_main
from hpo.agent import EXIT_INFRA, AttemptAddress, run_attempt
from hpo.errors import VolumeError
from hpo.events import CAUSE_MAX, Event, InterruptedEvent, drain, encode_event, parse_event
from hpo.volume import DirectoryVolume

OBJECTIVES = {
    "reports": """
        def objective(trial):
            for step in range(1, 4):
                trial.report(0.1 * step, step)
            return 0.3
    """,
    "checkpoints": """
        import numpy as np

        def objective(trial):
            trial.report(0.5, 1)
            trial.save_checkpoint({"w": np.zeros(3)}, 1)
            return 0.5
    """,
    "swallows": """
        def objective(trial):
            for step in range(1, 4):
                try:
                    trial.report(0.1 * step, step)
                    trial.save_checkpoint({"step": step}, step)
                except Exception:
                    pass  # "a flaky logger must not stop training": it cannot swallow a volume fault
            return 0.3
    """,
    "swallows_everything": """
        def objective(trial):
            for step in range(1, 4):
                try:
                    trial.report(0.1 * step, step)
                except BaseException:
                    pass
            return 0.3
    """,
    "wraps": """
        def objective(trial):
            try:
                trial.report(0.1, 1)
            except BaseException as exc:
                raise RuntimeError("training loop failed") from exc
            return 0.1
    """,
    "own_oserror": """
        def objective(trial):
            trial.report(0.1, 1)
            with open("/nonexistent-hpo-test-dir/train.csv") as f:
                return float(f.read())
    """,
    "asks_to_prune": """
        def objective(trial):
            trial.report(0.1, 1)
            if trial.should_prune():
                import optuna
                raise optuna.TrialPruned()
            return 0.1
    """,
    "resumes": """
        def objective(trial):
            state = trial.load_checkpoint()
            return 0.1
    """,
    "reports_forever": """
        def objective(trial):
            for step in range(100000):
                trial.report(1.0 / (step + 1), step)
            return 0.0
    """,
}

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@dataclass
class Fault:
    """Fail operation ``op`` on keys containing ``key_part`` once ``after`` such calls have passed.

    ``times`` bounds how many calls fail (None: every one from then on).
    """

    op: str
    key_part: str
    error: Exception
    after: int = 0
    times: int | None = None
    seen: int = 0
    raised: int = 0


class FaultyVolume(DirectoryVolume):
    """A directory volume whose operations fail as its armed :class:`Fault` rules say."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.faults: list[Fault] = []

    def arm(self, op: str, key_part: str, error: Exception, *, after: int = 0, times: int | None = None) -> Fault:
        fault = Fault(op, key_part, error, after, times)
        self.faults.append(fault)
        return fault

    def _check(self, op: str, key: str) -> None:
        for fault in self.faults:
            if fault.op != op or fault.key_part not in key:
                continue
            fault.seen += 1
            if fault.seen > fault.after and (fault.times is None or fault.raised < fault.times):
                fault.raised += 1
                raise fault.error

    def read_bytes(self, key: str) -> bytes:
        self._check("read", key)
        return super().read_bytes(key)

    def read_from(self, key: str, offset: int) -> bytes:
        self._check("read", key)
        return super().read_from(key, offset)

    def size(self, key: str) -> int | None:
        self._check("stat", key)
        return super().size(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._check("write", key)
        super().write_bytes(key, data)

    def append_bytes(self, key: str, data: bytes) -> None:
        self._check("append", key)
        super().append_bytes(key, data)


@pytest.fixture
def volume(tmp_path: Path) -> FaultyVolume:
    volume = FaultyVolume(tmp_path / "vol")
    publish_trials(volume, tmp_path / "objectives", OBJECTIVES)
    return volume


def _trial(name: str) -> int:
    return list(OBJECTIVES).index(name)


def _events(volume: DirectoryVolume, name: str) -> list[Event]:
    volume.faults = []  # type: ignore[attr-defined]  # read back what reached the disk
    return drain(volume, LAYOUT.events(_trial(name), 0))


def _run(volume: FaultyVolume, tmp_path: Path, name: str) -> tuple[int, list[Event]]:
    code = run_attempt(AttemptAddress("s", _trial(name), 0, str(volume.root)), volume, cache_dir=tmp_path / "cache")
    return code, _events(volume, name)


def _events_key(name: str) -> str:
    return LAYOUT.events(_trial(name), 0)


# -- faults while the objective runs ------------------------------------------------------


@pytest.mark.parametrize(
    "error", [VolumeError("s3://vol: cannot reach the S3 endpoint"), ENOSPC], ids=["volume", "enospc"]
)
def test_a_failing_checkpoint_write_interrupts_the_attempt_and_says_why(
    volume: FaultyVolume, tmp_path: Path, error: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    volume.arm("write", "/ckpt/", error)
    code, events = _run(volume, tmp_path, "checkpoints")
    assert code == EXIT_INFRA
    assert [e.type for e in events] == ["start", "report", "interrupted"]
    cause = events[-1].cause
    assert cause.startswith("volume: save_checkpoint at step 1: "), cause
    assert str(error.strerror if isinstance(error, OSError) else error) in cause
    assert events[-1].cpu_seconds is not None
    err = capsys.readouterr().err
    assert "interrupted by an infrastructure fault" in err and cause in err


def test_a_report_that_cannot_be_appended_interrupts_with_the_exit_code_and_no_error(
    volume: FaultyVolume, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Appends fail from the second report on, and keep failing: not even `interrupted` gets written.
    volume.arm("append", _events_key("reports"), ENOSPC, after=2)
    code, events = _run(volume, tmp_path, "reports")
    assert code == EXIT_INFRA
    assert [e.type for e in events] == ["start", "report"]
    err = capsys.readouterr().err
    assert "report at step 2" in err and "No space left on device" in err
    assert "could not write the interrupted event either" in err


def test_a_transient_append_failure_still_records_the_interruption(volume: FaultyVolume, tmp_path: Path) -> None:
    volume.arm("append", _events_key("reports"), VolumeError("s3://vol: cannot append: HTTP 503"), after=2, times=1)
    code, events = _run(volume, tmp_path, "reports")
    assert code == EXIT_INFRA
    assert [e.type for e in events] == ["start", "report", "interrupted"]
    assert events[-1].cause == "volume: report at step 2: s3://vol: cannot append: HTTP 503"


def test_except_exception_in_the_objective_cannot_swallow_a_volume_fault(volume: FaultyVolume, tmp_path: Path) -> None:
    volume.arm("write", "/ckpt/", ENOSPC)
    code, events = _run(volume, tmp_path, "swallows")
    assert code == EXIT_INFRA
    assert [e.type for e in events] == ["start", "report", "interrupted"]  # not "done", not "error"


def test_a_fault_the_objective_swallowed_with_a_bare_except_still_ends_the_attempt(
    volume: FaultyVolume, tmp_path: Path
) -> None:
    volume.arm("append", _events_key("swallows_everything"), ENOSPC, after=1, times=1)
    code, events = _run(volume, tmp_path, "swallows_everything")
    assert code == EXIT_INFRA
    assert [e.type for e in events] == ["start", "report", "report", "interrupted"]
    assert [e.step for e in events if e.type == "report"] == [2, 3]
    assert "report at step 1" in events[-1].cause


def test_an_objective_error_wrapping_a_volume_fault_is_still_the_fault(volume: FaultyVolume, tmp_path: Path) -> None:
    volume.arm("append", _events_key("wraps"), ENOSPC, after=1, times=1)
    code, events = _run(volume, tmp_path, "wraps")
    assert code == EXIT_INFRA and [e.type for e in events] == ["start", "interrupted"]


def test_the_objectives_own_oserror_is_still_its_error(volume: FaultyVolume, tmp_path: Path) -> None:
    code, events = _run(volume, tmp_path, "own_oserror")
    assert code == 1
    assert [e.type for e in events] == ["start", "report", "error"]
    assert events[-1].message.startswith("FileNotFoundError: ")


def test_an_objective_error_the_volume_refuses_to_record_ends_as_interrupted(
    volume: FaultyVolume, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Unrecorded, the error cannot fail the trial; the next attempt meets it again and records it.
    volume.arm("append", _events_key("own_oserror"), ENOSPC, after=2)
    code, events = _run(volume, tmp_path, "own_oserror")
    assert code == EXIT_INFRA and [e.type for e in events] == ["start", "report"]
    err = capsys.readouterr().err
    assert "FileNotFoundError" in err and "writing the error event" in err


def test_an_unreadable_control_file_in_should_prune_interrupts(volume: FaultyVolume, tmp_path: Path) -> None:
    volume.arm("read", "control.json", VolumeError("s3://vol: cannot read 'control.json': HTTP 500"), after=1)
    volume.write_json(LAYOUT.control(_trial("asks_to_prune")), {"action": "none"})
    code, events = _run(volume, tmp_path, "asks_to_prune")
    assert code == EXIT_INFRA and [e.type for e in events] == ["start", "report", "interrupted"]
    assert events[-1].cause.startswith("volume: reading control.json: ")


def test_a_malformed_control_file_is_still_no_order(volume: FaultyVolume, tmp_path: Path) -> None:
    volume.write_bytes(LAYOUT.control(_trial("asks_to_prune")), b'{"action": "pru')
    code, events = _run(volume, tmp_path, "asks_to_prune")
    assert code == 0 and events[-1].type == "done"


# -- faults before the objective starts -----------------------------------------------------


@pytest.mark.parametrize(
    ("op", "key_part", "where"),
    [
        ("read", "spec.json", "reading the trial spec"),
        ("read", "/code/", "unpacking the code snapshot"),
        ("read", "/ckpt/", "load_checkpoint"),
        ("stat", "events.jsonl", "reading the attempt's event file"),
        ("append", "events.jsonl", "writing the start event"),
    ],
)
def test_a_fault_before_the_objective_starts_interrupts(
    volume: FaultyVolume, tmp_path: Path, op: str, key_part: str, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    error = {"append": ENOSPC, "stat": OSError(errno.EIO, os.strerror(errno.EIO), "/workspace/hpo")}.get(
        op, VolumeError("file:///vol: cannot read: Input/output error")
    )
    volume.arm(op, key_part, error, times=1)
    code, events = _run(volume, tmp_path, "resumes")
    assert code == EXIT_INFRA
    assert not [e for e in events if e.type == "error"]
    assert events[-1].type == "interrupted" and where in events[-1].cause
    assert where in capsys.readouterr().err


def test_a_malformed_spec_is_an_error_not_a_fault(volume: FaultyVolume, tmp_path: Path) -> None:
    volume.write_bytes(LAYOUT.spec(_trial("reports")), b'{"study": "s"}')
    code, events = _run(volume, tmp_path, "reports")
    assert code == 1 and events[-1].type == "error" and "not a valid trial spec" in events[-1].message


def test_a_restarted_container_does_not_rerun_an_interrupted_attempt(volume: FaultyVolume, tmp_path: Path) -> None:
    volume.append_bytes(_events_key("reports"), encode_event(InterruptedEvent(cause="volume: x")))
    code, events = _run(volume, tmp_path, "reports")
    assert code == 0 and [e.type for e in events] == ["interrupted"]


# -- in a pod: the agent still ends its pod --------------------------------------------------


def test_in_a_pod_an_interrupted_attempt_still_ends_its_pod(
    volume: FaultyVolume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume.arm("append", "events.jsonl", ENOSPC)
    ended: list[str] = []
    monkeypatch.setattr(agent_main, "open_volume", lambda root: volume)
    monkeypatch.setattr(agent_main, "redirect_output", lambda path: None)
    monkeypatch.setattr(agent_main, "end_worker", lambda env: ended.append(env["RUNPOD_POD_ID"]))
    env = {"HPO_STUDY": "s", "HPO_TRIAL": str(_trial("reports")), "HPO_ATTEMPT": "0", "HPO_VOLUME": str(volume.root)}
    env |= {"RUNPOD_POD_ID": "pod-1", "HPO_CACHE_DIR": str(tmp_path / "cache")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert agent_main.main() == EXIT_INFRA
    assert ended == ["pod-1"]


def test_in_a_pod_a_log_on_a_failing_volume_does_not_stop_the_agent(
    volume: FaultyVolume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ended: list[str] = []

    def no_log(path: Path) -> None:
        raise ENOSPC

    monkeypatch.setattr(agent_main, "open_volume", lambda root: volume)
    monkeypatch.setattr(agent_main, "redirect_output", no_log)
    monkeypatch.setattr(agent_main, "end_worker", lambda env: ended.append(env["RUNPOD_POD_ID"]))
    env = {"HPO_STUDY": "s", "HPO_TRIAL": str(_trial("reports")), "HPO_ATTEMPT": "0", "HPO_VOLUME": str(volume.root)}
    env |= {"RUNPOD_POD_ID": "pod-2", "HPO_CACHE_DIR": str(tmp_path / "cache")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert agent_main.main() == 0
    assert ended == ["pod-2"] and _events(volume, "reports")[-1].type == "done"


# -- the event ------------------------------------------------------------------------------


def test_the_interrupted_event_is_one_short_line_and_round_trips() -> None:
    event = InterruptedEvent(cause="volume: report at step 3:\n" + "x" * 5000)
    assert "\n" not in event.cause and len(event.cause) == CAUSE_MAX and event.cause.endswith("...")
    parsed = parse_event(encode_event(event))
    assert parsed.type == "interrupted" and parsed.cause == event.cause
    with pytest.raises(ValueError, match="cause"):
        parse_event(b'{"type": "interrupted", "cause": "  "}')


# -- a real full disk, in a real agent process -----------------------------------------------


def _limit_file_size() -> None:
    # Files may not grow past 1500 bytes: a write past that fails with EFBIG, as on a full disk
    # (with SIGXFSZ ignored, the kernel returns the error instead of killing the process).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))


def test_a_real_full_disk_under_the_real_agent_ends_with_the_infra_exit_code(
    volume: FaultyVolume, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "HPO_STUDY": "s", "HPO_TRIAL": str(_trial("reports_forever")), "HPO_ATTEMPT": "0",
        "HPO_VOLUME": str(volume.root),
        "HPO_CACHE_DIR": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("RUNPOD_POD_ID", None)
    done = subprocess.run(
        [sys.executable, "-m", "hpo.agent"], env=env, cwd=tmp_path, preexec_fn=_limit_file_size,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == EXIT_INFRA, done.stderr
    assert "interrupted by an infrastructure fault" in done.stderr and "report at step" in done.stderr
    assert "File too large" in done.stderr
    events = _events(volume, "reports_forever")
    assert events and events[0].type == "start"
    assert not [e for e in events if e.type in ("error", "done")]


def test_only_infrastructure_errors_are_faults_and_their_cause_names_the_kind() -> None:
    from hpo.agent._infra import describe, is_infra

    assert is_infra(VolumeError("x")) and is_infra(ENOSPC) and is_infra(ConnectionResetError(104, "reset"))
    assert not is_infra(ValueError("x")) and not is_infra(KeyError("x"))
    assert describe("report at step 1", ConnectionResetError(104, "Connection reset by peer")).startswith(
        "network: report at step 1: "
    )
    cause = describe("reading the trial spec", VolumeError("s3://v: HTTP 500"))
    assert cause == "volume: reading the trial spec: s3://v: HTTP 500"
