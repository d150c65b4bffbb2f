"""What the volume holds never stalls a study (issue 11: untrusted input from the volume).

One table of bad inputs: what is written where (an event file, a journal
segment, lease.json, launch.json, spec.json, control.json, a checkpoint, a
symlink), and what must come of it: a one-line warning or error naming the
file, never a traceback, and the study's other data intact. Each row names a
driver that plants the input and plays the reader that meets it (the
controller over tests/controller_harness.py, ``hpo status`` (in this process,
as ``hpo.cli.main``; one row as a ``python -m hpo`` subprocess, the real entry
point), the lease, the agent's trial); the row's ``expect`` is a phrase the
one line must hold besides the file's key.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pytest
from controller_harness import Seam
from optuna.trial import TrialState
from studyfiles import hpo_in_process

from hpo import events as events_module
from hpo.agent._checkpoint import encode_checkpoint
from hpo.agent._trial import AgentTrial
from hpo.errors import HpoError, JournalError, LeaseError, VolumeError, VolumeEscapeError
from hpo.journal import open_storage
from hpo.lease import Lease
from hpo.records import read_control_order
from hpo.spec import TrialSpec
from hpo.status import study_rows
from hpo.volume import DirectoryVolume

optuna.logging.set_verbosity(optuna.logging.WARNING)

NOW = 1_000_000.0  # the harness's clock at the start


@dataclass(frozen=True)
class Case:
    """One bad input: which driver plants and reads it, what it writes, and a phrase the one line holds."""

    id: str
    driver: str
    data: bytes
    expect: str


def j(value: object) -> bytes:
    return json.dumps(value).encode()


def npz(**members: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **members)  # type: ignore[arg-type]
    return buffer.getvalue()


def meta(value: object) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)


CASES = [
    # -- an attempt's events.jsonl, read by the controller: the line is skipped with one warning ----------
    Case("event-done-nan", "event", b'{"type": "done", "value": NaN}', "done.value"),
    Case("event-done-infinity", "event", b'{"type": "done", "value": -Infinity}', "done.value"),
    Case("event-done-value-string", "event", j({"type": "done", "value": "0.5"}), "done.value"),
    Case("event-report-step-bool", "event", j({"type": "report", "step": True, "value": 1.0}), "report.step"),
    Case("event-report-step-huge", "event", j({"type": "report", "step": 10**30, "value": 1.0}), "report.step"),
    Case("event-report-step-float", "event", j({"type": "report", "step": 1.5, "value": 1.0}), "report.step"),
    Case("event-report-value-bool", "event", j({"type": "report", "step": 2, "value": False}), "report.value"),
    Case("event-report-t-nan", "event", b'{"type": "report", "step": 2, "value": 1.0, "t": NaN}', "report.t"),
    Case("event-user-attr-key-int", "event", j({"type": "user_attr", "key": 1, "value": 1}), "user_attr.key"),
    Case("event-user-attr-key-long", "event", j({"type": "user_attr", "key": "k" * 1000, "value": 1}), "user_attr.key"),
    Case("event-user-attr-value-nan", "event", b'{"type": "user_attr", "key": "a", "value": [1, NaN]}', "finite"),
    Case("event-pruned-cpu-negative", "event", j({"type": "pruned", "cpu_seconds": -5}), "cpu_seconds"),
    Case("event-error-message-object", "event", j({"type": "error", "message": {"a": 1}}), "error.message"),
    Case("event-start-pid-huge", "event", j({"type": "start", "pid": 10**30, "host": "h"}), "start.pid"),
    Case("event-not-json", "event", b"\x00\xff garbage", "Invalid JSON"),
    Case("event-json-list", "event", b"[1]", "Input should be"),
    Case("event-deep-nesting", "event", b"[" * 100_000, "recursion limit"),
    Case("event-unknown-type", "event", j({"type": "teleport"}), "does not match any of the expected tags"),
    # -- too much of it: one warning per file and poll, bounded reads ---------------------------------------
    Case("events-a-flood-of-garbage", "event-flood", b"garbage\n" * 100_000, "skipped 100000 lines"),
    Case("events-one-enormous-line", "event-long-line", b"x" * (3 << 20), "longer than"),
    # -- a journal segment, read by `hpo status`: exit 1, one line naming the segment and the line --------
    Case("journal-unknown-op", "journal-cli", j({"op_code": 99}), "'op_code' must be one of"),
    Case("journal-list", "journal-cli", j([1]), "not a list"),
    Case("journal-trial-id-string", "journal-cli", j({"op_code": 4, "worker_id": "w", "trial_id": "x"}), "study_id"),
    Case("journal-op-code-bool", "journal-cli", j({"op_code": True, "worker_id": "w"}), "'op_code'"),
    Case(
        "journal-step-string", "journal-cli",
        j({"op_code": 7, "worker_id": "w", "trial_id": 0, "step": "x", "intermediate_value": 1.0}), "'step'",
    ),
    Case(
        "journal-attr-two-keys", "journal-cli",
        j({"op_code": 8, "worker_id": "w", "trial_id": 0, "user_attr": {"a": 1, "b": 2}}), "one key",
    ),
    Case(
        "journal-bad-distribution", "journal-cli",
        j({"op_code": 5, "worker_id": "w", "trial_id": 0, "param_name": "x", "param_value_internal": 0.5,
           "distribution": "{\"name\": \"Nope\"}"}),
        "not a distribution",
    ),
    Case("journal-not-json", "journal-entry-point", b"{\"op_code\": ", "corrupt journal segment"),
    # -- Optuna's replay raising on a log of the right shape: one JournalError naming the study -----------
    Case("journal-replay-raises", "journal-replay", j({"op_code": 4, "worker_id": "w", "study_id": 0}), "cannot replay"),
    # -- a local journal cache holding a line that is no log: rebuilt from the volume, nothing lost -------
    Case("journal-cache-junk", "journal-cache", b"[1]", ""),
    # -- lease.json: junk is stale (taken over, one warning); a live lease's refusal is human ---------------
    Case("lease-expiry-1e308", "lease-invalid", j({"id": "x", "host": "h", "pid": 1, "expires_at": 1e308}), "away"),
    Case("lease-expiry-nan", "lease-invalid", b'{"id": "x", "host": "h", "pid": 1, "expires_at": NaN}', "finite"),
    Case("lease-expiry-string", "lease-invalid", j({"id": "x", "host": "h", "pid": 1, "expires_at": "soon"}), "finite"),
    Case("lease-pid-huge", "lease-invalid", j({"id": "x", "host": "h", "pid": 10**30, "expires_at": NOW + 30}), "pid"),
    Case("lease-list", "lease-invalid", j([1]), "not a JSON object"),
    Case("lease-digits", "lease-invalid", b'{"expires_at": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    Case("lease-live-refusal", "lease-live", j({"id": "x", "host": "h", "pid": 1, "expires_at": NOW + 600}), "10m 0s"),
    # -- launch.json, read by status: one warning, the worker column stays empty ----------------------------
    Case("launch-list", "launch", j([1]), "malformed launch record"),
    Case("launch-price-string", "launch", j({"backend": "runpod", "pod_id": "p", "cost_per_hr": "x"}), "cost_per_hr"),
    Case("launch-pid-huge", "launch", j({"backend": "local", "pid": 10**30}), "pid"),
    Case("launch-deep", "launch", b"[" * 100_000, "nested too deeply"),
    # -- spec.json, read by the agent: one error naming the file -------------------------------------------
    Case("spec-list", "spec", j([1]), "not a valid trial spec"),
    Case("spec-not-json", "spec", b"{spec", "not valid JSON"),
    Case(
        "spec-code-path", "spec",
        j({"study": "seam", "trial": 0, "objective": "o", "params": {}, "search_space": {}, "max_step": 5,
           "code": "../../etc/passwd"}),
        "code",
    ),
    Case(
        "spec-max-step-bool", "spec",
        j({"study": "seam", "trial": 0, "objective": "o", "params": {}, "search_space": {}, "max_step": True}),
        "max_step",
    ),
    # -- control.json, read by the controller: one warning, no order, the trial goes on ---------------------
    Case("control-list", "control", j([1]), "malformed control file"),
    Case("control-action-list", "control", j({"action": ["prune"]}), "action"),
    Case("control-string", "control", j("prune"), "malformed control file"),
    Case("control-binary", "control", b"\xff\xfe\x00", "not valid JSON"),
    # -- the trial's checkpoint, read by the agent: one warning, the trial starts afresh ------------------
    Case("checkpoint-random-bytes", "checkpoint", os.urandom(64), "not a valid checkpoint"),
    Case("checkpoint-no-meta", "checkpoint", npz(a0=np.zeros(3)), "no __hpo_meta__"),
    Case("checkpoint-pickled-meta", "checkpoint", npz(__hpo_meta__=np.array([{"evil": 1}], dtype=object)), "pickle"),
    Case("checkpoint-step-string", "checkpoint", npz(__hpo_meta__=meta({"step": "x", "plain": {}, "arrays": []})), "step"),
    Case("checkpoint-missing-array", "checkpoint", npz(__hpo_meta__=meta({"step": 3, "plain": {}, "arrays": ["w"]})), "a0"),
    # -- symlinks out of a folder volume: refused by name ----------------------------------------------------
    Case("symlink-events-to-system-file", "symlink-events", b"", "resolves outside the volume"),
    Case("symlink-trial-folder-out", "symlink-spec-folder", b"", "resolves outside the volume"),
    Case("symlink-lease-out", "symlink-lease", b"", "resolves outside the volume"),
    Case("symlink-loop", "symlink-loop", b"", "resolves outside the volume"),
]


def one_line(text: str) -> None:
    assert "\n" not in text.strip() and "Traceback" not in text and len(text) < 1000, text


def warnings_about(caplog: pytest.LogCaptureFixture, key: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and key in r.getMessage()]


# -- drivers ----------------------------------------------------------------------------------------------


def started(tmp_path: Path) -> Seam:
    """A study with two running trials; trial 1 has reported a value (the data that must stay intact)."""
    seam = Seam(tmp_path, trials=2, concurrency=2, volume="directory")  # the test writes and patches files
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(1, {1: 0.5})
    seam.controller.cycle()
    return seam


def trial_values(seam: Seam) -> dict[int, tuple[TrialState, dict[int, float]]]:
    assert seam.controller.study is not None
    return {t.number: (t.state, dict(t.intermediate_values)) for t in seam.controller.study.get_trials(deepcopy=False)}


def drive_event(case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    seam = started(tmp_path)
    key = seam.layout.events(0, 0)
    path = Path(seam.volume.address) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.driver == "event-long-line":
        # Small limits, the same code: a line past the cap is dropped as it comes, never held whole.
        monkeypatch.setattr(events_module, "MAX_LINE_BYTES", 64 << 10)
        monkeypatch.setattr(events_module, "READ_CHUNK", 256 << 10)
        reads: list[int] = []
        original = DirectoryVolume.read_range

        def recording(self: DirectoryVolume, key: str, offset: int, length: int) -> bytes:
            data = original(self, key, offset, length)
            reads.append(len(data))
            return data

        monkeypatch.setattr(DirectoryVolume, "read_range", recording)
        path.write_bytes(case.data)  # no newline yet: the writer is still at it
        with caplog.at_level(logging.WARNING):
            seam.controller.cycle()
        assert max(reads) <= 256 << 10
        with open(path, "ab") as f:
            f.write(b"\n" + j({"type": "report", "step": 1, "value": 0.25}) + b"\n")
    else:
        path.write_bytes(case.data + (b"" if case.data.endswith(b"\n") else b"\n") + j({"type": "report", "step": 1, "value": 0.25}) + b"\n")
    with caplog.at_level(logging.WARNING):
        seam.controller.cycle()
    said = warnings_about(caplog, key)
    assert len(said) == 1, said  # one summary, never one line per bad line
    one_line(said[0])
    assert case.expect in said[0]
    assert "line 1" in said[0]
    # The bad line changed nothing; the good line after it landed; the other trial is intact.
    assert trial_values(seam) == {0: (TrialState.RUNNING, {1: 0.25}), 1: (TrialState.RUNNING, {1: 0.5})}


def hpo_status(tmp_path: Path, cache: str, *, subprocess_: bool = False) -> subprocess.CompletedProcess[str]:
    """``hpo status`` on the seam's study: in this process, or as ``python -m hpo`` with ``subprocess_``."""
    args = ("status", "--study", "seam", "--studies", str(tmp_path / "studies.yaml"))
    if not subprocess_:
        return hpo_in_process(*args, env={"HPO_CACHE_DIR": str(tmp_path / cache)})
    env = {**os.environ, "HPO_CACHE_DIR": str(tmp_path / cache)}
    return subprocess.run(
        [sys.executable, "-m", "hpo", *args], capture_output=True, text=True, env=env, timeout=180, check=False,
    )


def last_segment(seam: Seam) -> str:
    segments = [
        info.key for info in seam.volume.list(seam.layout.journal_dir + "/")
        if (parsed := seam.layout.parse_journal_key(info.key)) is not None and parsed.kind == "segment"
    ]
    return max(segments)


def drive_journal(case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    seam = started(tmp_path)
    seam.controller.storage.flush()
    key = last_segment(seam)
    data = seam.volume.read_bytes(key)
    lines = len(data.splitlines())
    if case.driver == "journal-cache":
        assert hpo_status(tmp_path, "reader-cache").returncode == 0  # warms the reader's cache
        cache = next((tmp_path / "reader-cache").rglob("seam.journal"))
        first, rest = cache.read_bytes().split(b"\n", 1)
        cache.write_bytes(case.data.ljust(len(first)) + b"\n" + rest)  # same size: only reading it can tell
        with caplog.at_level(logging.WARNING):
            storage = open_storage(seam.volume, "seam", cache_dir=tmp_path / "reader-cache")
        study = storage.load_study("seam")
        assert study is not None and [t.intermediate_values for t in study.get_trials()] == [{}, {1: 0.5}]
        return
    seam.volume.write_bytes(key, data + case.data + b"\n")
    if case.driver == "journal-replay":
        # A log that passes the checks but still makes Optuna's replay raise: one JournalError naming the study.
        monkeypatch.setattr("hpo.journal._backend.log_problem", lambda entry: None)
        with pytest.raises(JournalError) as info:
            storage = open_storage(seam.volume, "seam", cache_dir=tmp_path / "replay-cache")
            storage.load_study("seam")
        one_line(str(info.value))
        assert case.expect in str(info.value) and "'seam'" in str(info.value)
        return
    result = hpo_status(tmp_path, "fresh-cache", subprocess_=case.driver == "journal-entry-point")
    assert result.returncode == 1, result
    assert result.stdout == ""
    one_line(result.stderr)
    assert key in result.stderr and f"line {lines + 1}" in result.stderr and case.expect in result.stderr, result.stderr
    assert seam.volume.read_bytes(key).startswith(data)  # nothing of the study was touched


def drive_lease(case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    key = "hpo/seam/lease.json"
    volume.write_bytes(key, case.data)
    lease = Lease(volume, "seam", clock=lambda: NOW, sleep=lambda s: None, settle=0.0)
    if case.driver == "lease-live":
        with pytest.raises(LeaseError) as info:
            lease.acquire()
        one_line(str(info.value))
        assert case.expect in str(info.value) and f"delete {key}" in str(info.value)
        assert volume.read_bytes(key) == case.data  # a live lease is left alone
        return
    with caplog.at_level(logging.WARNING):
        lease.acquire()
    assert lease.held
    said = warnings_about(caplog, key)
    assert said and case.expect in said[0], said
    one_line(said[0])


def drive_launch(case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    seam = started(tmp_path)
    seam.controller.storage.flush()
    key = seam.layout.launch(0, 0)
    seam.volume.write_bytes(key, case.data)
    with caplog.at_level(logging.WARNING):
        rows = study_rows(seam.config, seam.volume, cache_dir=tmp_path / "status-cache")
    assert rows is not None and [r.worker for r in rows] == [None, None]
    assert rows[1].last_value == 0.5
    said = warnings_about(caplog, key)
    assert len(said) == 1 and case.expect in said[0], said
    one_line(said[0])


def drive_spec(case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpo.agent._runner import _read_spec

    volume = DirectoryVolume(tmp_path / "vol")
    key = "hpo/seam/trials/0/spec.json"
    volume.write_bytes(key, case.data)
    with pytest.raises(VolumeError) as info:
        TrialSpec.read(volume, key)
    one_line(str(info.value))
    assert key in str(info.value) and case.expect in str(info.value)
    with pytest.raises(HpoError) as agent:  # the agent's reading: the trial fails with this one line
        _read_spec(volume, key)
    one_line(str(agent.value))
    assert key in str(agent.value)


def drive_control(case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    seam = started(tmp_path)
    key = seam.layout.control(0)
    seam.volume.write_bytes(key, case.data)
    with caplog.at_level(logging.WARNING):
        assert read_control_order(seam.volume, key) is None
        controller = seam.crash_and_restart()  # adoption reads control.json too
        seam.reports(0, {1: 0.25})
        controller.cycle()
    said = warnings_about(caplog, key)
    assert said and case.expect in said[0], said
    one_line(said[0])
    assert trial_values(seam) == {0: (TrialState.RUNNING, {1: 0.25}), 1: (TrialState.RUNNING, {1: 0.5})}


def drive_checkpoint(case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    key = "hpo/seam/trials/0/ckpt/checkpoint.npz"
    volume.write_bytes(key, case.data)
    spec = TrialSpec(study="seam", trial=0, objective="o", params={}, search_space={}, max_step=5)
    trial = AgentTrial(spec, 1, volume, lambda event: None)
    with caplog.at_level(logging.WARNING):
        assert trial.load_checkpoint() is None
    assert trial.resume_step == 0 and trial.fault is None
    said = warnings_about(caplog, key)
    assert len(said) == 1 and case.expect in said[0] and "starts afresh" in said[0], said
    one_line(said[0])
    trial.save_checkpoint({"w": np.ones(2)}, 2)  # the next save replaces the bad file
    assert AgentTrial(spec, 2, volume, lambda event: None).resume_step == 2


def drive_symlink(case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    if case.driver == "symlink-events":
        secret = outside / "passwd"
        secret.write_bytes(j({"type": "report", "step": 1, "value": 0.125}) + b"\n")  # would pass as an event
        seam = started(tmp_path)
        key = seam.layout.events(0, 0)
        path = Path(seam.volume.address) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(secret)
        with caplog.at_level(logging.WARNING):
            seam.controller.cycle()
            seam.controller.cycle()
        said = warnings_about(caplog, key)
        assert len(said) == 1 and case.expect in said[0], said
        one_line(said[0])
        assert trial_values(seam) == {0: (TrialState.RUNNING, {}), 1: (TrialState.RUNNING, {1: 0.5})}
        return
    volume = DirectoryVolume(tmp_path / "vol")
    if case.driver == "symlink-spec-folder":
        (tmp_path / "vol" / "hpo" / "seam" / "trials").mkdir(parents=True)
        (tmp_path / "vol" / "hpo" / "seam" / "trials" / "0").symlink_to(outside, target_is_directory=True)
        key = "hpo/seam/trials/0/spec.json"
        with pytest.raises(VolumeEscapeError) as info:
            volume.write_bytes(key, b"{}")
        assert list(outside.iterdir()) == []  # nothing was written outside the volume
    elif case.driver == "symlink-lease":
        (outside / "lease.json").write_bytes(j({"id": "x", "host": "h", "pid": 1, "expires_at": NOW + 600}))
        (tmp_path / "vol" / "hpo" / "seam").mkdir(parents=True)
        (tmp_path / "vol" / "hpo" / "seam" / "lease.json").symlink_to(outside / "lease.json")
        key = "hpo/seam/lease.json"
        with pytest.raises(VolumeEscapeError) as info:
            volume.read_json(key)
    else:
        (tmp_path / "vol" / "hpo").mkdir(parents=True)
        (tmp_path / "vol" / "hpo" / "a").symlink_to(tmp_path / "vol" / "hpo" / "b")
        (tmp_path / "vol" / "hpo" / "b").symlink_to(tmp_path / "vol" / "hpo" / "a")
        key = "hpo/a/events.jsonl"
        with pytest.raises(VolumeEscapeError) as info:
            volume.read_bytes(key)
        assert volume.size(key) is None
    one_line(str(info.value))
    assert key in str(info.value) and case.expect in str(info.value)


DRIVERS: dict[str, Callable[[Case, Path, pytest.LogCaptureFixture, pytest.MonkeyPatch], None]] = {
    "event": drive_event,
    "event-flood": drive_event,
    "event-long-line": drive_event,
    "journal-cli": drive_journal,
    "journal-entry-point": drive_journal,
    "journal-replay": drive_journal,
    "journal-cache": drive_journal,
    "lease-invalid": drive_lease,
    "lease-live": drive_lease,
    "launch": drive_launch,
    "spec": drive_spec,
    "control": drive_control,
    "checkpoint": drive_checkpoint,
    "symlink-events": drive_symlink,
    "symlink-spec-folder": drive_symlink,
    "symlink-lease": drive_symlink,
    "symlink-loop": drive_symlink,
}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_from_the_volume_is_one_line_and_stalls_nothing(
    case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    DRIVERS[case.driver](case, tmp_path, caplog, monkeypatch)


def test_the_table_covers_every_kind_of_file() -> None:
    assert len(CASES) >= 25
    assert {case.driver for case in CASES} == set(DRIVERS)
    assert len({case.id for case in CASES}) == len(CASES)


def test_a_symlink_that_stays_inside_the_volume_is_followed(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    volume.write_bytes("data/real.txt", b"hello")
    (tmp_path / "vol" / "alias").symlink_to(tmp_path / "vol" / "data", target_is_directory=True)
    assert volume.read_bytes("alias/real.txt") == b"hello"
    assert [info.key for info in volume.list("alias/")] == ["alias/real.txt"]


def test_garbage_warnings_are_spaced_per_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    key = "hpo/s/trials/0/attempts/0/events.jsonl"
    now = [0.0]
    tail = events_module.EventTail(volume, key, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(10):  # a pod writing one garbage line every poll
            volume.append_bytes(key, b"junk\n")
            tail.poll()
            now[0] += 1.0
        assert len(warnings_about(caplog, key)) == 1
        now[0] += events_module.WARN_INTERVAL
        tail.poll()
    said = warnings_about(caplog, key)
    assert len(said) == 2 and "skipped 9 lines" in said[1]
    assert tail.garbage_lines == 10


def test_a_checkpoint_of_ours_still_round_trips(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    volume.write_bytes("hpo/seam/trials/0/ckpt/checkpoint.npz", encode_checkpoint({"w": np.arange(3), "n": 1}, 4))
    spec = TrialSpec(study="seam", trial=0, objective="o", params={}, search_space={}, max_step=5)
    trial = AgentTrial(spec, 1, volume, lambda event: None)
    state = trial.load_checkpoint()
    assert state is not None and state["n"] == 1 and trial.resume_step == 4
