"""Helpers for tests that run whole studies: a workspace, the study's processes, its events."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import optuna
import psutil
import pytest

from hpo.config import StudyConfig, load_study
from hpo.controller import open_study_volume
from hpo.events import ReportEvent, drain
from hpo.fake_runpod import FakeRunPod
from hpo.journal import open_storage
from hpo.layout import StudyLayout
from hpo.volume import Volume

REPO = Path(__file__).resolve().parent.parent

STUDIES_YAML = """
studies:
  mini:
    objective: digits_mlp
    search_space:
      lr: {type: float, low: 1.0e-3, high: 1.0, log: true}
      hidden: {type: int, low: 16, high: 64, step: 16}
      depth: {type: int, low: 1, high: 2}
      weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
      batch_size: {type: categorical, choices: [32, 64, 128]}
      activation: {type: categorical, choices: [relu, tanh]}
    sampler: {type: tpe, seed: 3, n_startup_trials: 6}
    pruner: {type: median, n_startup_trials: 2, n_warmup_steps: 2}
    fidelity: {max_step: 8}
    budget: {trials: 10, concurrency: 3, max_attempts: 2}
    volume: {path: storage}
    poll_interval: 0.05
  steady:
    objective: steady
    search_space:
      x: {type: float, low: 0.0, high: 1.0}
      pace: {type: categorical, choices: [PACE]}
      fail_trial: {type: categorical, choices: [FAIL_TRIAL]}
      garbage: {type: categorical, choices: [GARBAGE]}
      gate: {type: categorical, choices: [GATE]}
    sampler: {type: random, seed: 11}
    pruner: PRUNER
    fidelity: {max_step: MAX_STEP}
    budget: {trials: TRIALS, concurrency: CONCURRENCY, max_attempts: 3}
    workers: {idle_limit: IDLE_LIMIT}
    volume: {path: storage}
    poll_interval: 0.05
    STORAGE
  pods:
    objective: steady
    search_space:
      x: {type: float, low: 0.0, high: 1.0}
      pace: {type: categorical, choices: [PACE]}
      fail_trial: {type: categorical, choices: [FAIL_TRIAL]}
      garbage: {type: categorical, choices: [false]}
    sampler: {type: random, seed: 5}
    pruner: {type: none}
    fidelity: {max_step: MAX_STEP}
    compute:
      backend: runpod
      image: ghcr.io/example/hpo-trial:test
      gpu_types: [NVIDIA RTX A5000, NVIDIA RTX A4000]
      spot: SPOT
      data_centers: [EU-RO-1]
      cuda_versions: ["12.4"]
    budget: {trials: TRIALS, concurrency: CONCURRENCY, max_attempts: 3}
    workers: {reuse: REUSE, idle_limit: IDLE_LIMIT}
    volume: {id: VOLUME_ID, data_center: EU-RO-1, local_path: storage}
    poll_interval: 0.1
"""

VOLUME_ID = "vol0123456"


def make_workspace(
    root: Path,
    *,
    pace: float = 0.05,
    fail_trial: int = -1,
    max_step: int = 6,
    trials: int = 4,
    concurrency: int = 2,
    garbage: bool = False,
    storage: str | None = None,
    spot: bool | str = True,
    gate: Path | str | None = None,
    pruner: str = "{type: none}",
    idle_limit: float = 120.0,
    reuse: bool = True,
) -> Path:
    """A project folder with studies.yaml, objectives/ (the demo's and the tests') and storage/.

    ``gate``: a file the steady study's trials wait for at step 2 (see tests/objectives/steady.py);
    ``pruner``: the steady study's pruner (none by default); ``idle_limit``: its warm workers' (seconds);
    ``reuse``: whether the pods study's workers are warm (its ``workers.reuse``).
    """
    root.mkdir(parents=True, exist_ok=True)
    text = (
        STUDIES_YAML.replace("PACE", str(pace))
        .replace("FAIL_TRIAL", str(fail_trial))
        .replace("MAX_STEP", str(max_step))
        .replace("TRIALS", str(trials))
        .replace("CONCURRENCY", str(concurrency))
        .replace("GARBAGE", "true" if garbage else "false")
        .replace("GATE", json.dumps(str(gate) if gate else "none"))
        .replace("PRUNER", pruner)
        .replace("IDLE_LIMIT", repr(float(idle_limit)))
        .replace("REUSE", "true" if reuse else "false")
        .replace("STORAGE", f"storage: {storage}" if storage else "")
        .replace("SPOT", spot if isinstance(spot, str) else str(spot).lower())
        .replace("VOLUME_ID", VOLUME_ID)
    )
    (root / "studies.yaml").write_text(text)
    objectives = root / "objectives"
    objectives.mkdir(exist_ok=True)
    shutil.copy(REPO / "objectives" / "digits_mlp.py", objectives / "digits_mlp.py")
    shutil.copy(REPO / "tests" / "objectives" / "steady.py", objectives / "steady.py")
    (objectives / "__init__.py").write_text("")
    (root / "storage").mkdir(exist_ok=True)
    return root / "studies.yaml"


def study_config(studies: Path, name: str) -> StudyConfig:
    return load_study(studies, name)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


class _Lines(logging.Handler):
    """Log records as the lines ``python -m hpo`` prints them (hpo.cli._common.setup_logging's format)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"hpo: {record.levelname}: {record.getMessage()}\n")


def hpo_in_process(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m hpo ARGS`` run as ``hpo.cli.main(ARGS)`` in this process, answered as the subprocess would be.

    For tests of what a command says and its exit code, without an interpreter start per
    call (seconds on a loaded machine). stdout and stderr are captured; each log record at
    WARNING or above counts as the stderr line ``python -m hpo`` would print for it, so
    "one line on stderr" still counts them; argparse's exit is the exit code. ``env`` is set
    over ``os.environ`` and ``cwd`` entered for the call only. Tests that run the real entry
    point (``python -m hpo`` in a subprocess) keep doing so.
    """
    from hpo.cli import main

    out, err, logged = io.StringIO(), io.StringIO(), _Lines()
    root = logging.getLogger()
    root.addHandler(logged)
    try:
        with (
            mock.patch.dict(os.environ, dict(env or {})),
            contextlib.chdir(cwd or Path.cwd()),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's own answers (--help, a usage error)
                code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    finally:
        root.removeHandler(logged)
    return subprocess.CompletedProcess(["hpo", *args], code, out.getvalue(), "".join(logged.lines) + err.getvalue())


def count_events(volume: Volume, key: str, kind: str) -> int:
    """How many whole events of type ``kind`` the event file at ``key`` holds."""
    return sum(event.type == kind for event in drain(volume, key))


@contextmanager
def fake_runpod_for(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_key: str) -> Iterator[FakeRunPod]:
    """A fake RunPod whose volume is ``project/storage``, with the client's env pointed at it.

    On exit it asserts that no pod of the study is left live, then stops the fake.
    """
    (project / "storage").mkdir(parents=True)
    server = FakeRunPod(
        volumes={VOLUME_ID: project / "storage"}, volume_data_center="EU-RO-1", api_keys={api_key},
        time_scale=20.0, provision_seconds=4.0, start_seconds=2.0, kill_grace_seconds=5.0, workdir=tmp_path / "fake",
        pod_command=[sys.executable, str(Path(__file__).parent / "pod_entry.py")],
    ).start()
    for name, value in server.client_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RUNPOD_API_KEY", api_key)
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    try:
        yield server
        assert [p for p in server.pods(include_terminated=True) if p.status not in ("TERMINATED", "EXITED")] == []
    finally:
        server.stop()


def study_volume(config: StudyConfig) -> Volume:
    """The study's volume as the controller reaches it (a folder, or S3)."""
    return open_study_volume(config)


def study_processes(config: StudyConfig) -> list[psutil.Process]:
    """Every live (non-zombie) process whose environment says it runs a trial of this study."""
    found = []
    root = study_volume(config).address
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            env = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if env.get("HPO_STUDY") == config.name and env.get("HPO_VOLUME") == root:
            found.append(proc)
    return found


def first_reports(config: StudyConfig, trial: int) -> dict[int, float]:
    """The first value each step of ``trial`` reported, over all its attempts in order."""
    volume = study_volume(config)
    layout = StudyLayout(config.name)
    firsts: dict[int, float] = {}
    attempt = 0
    while volume.exists(layout.events(trial, attempt)) or volume.exists(layout.launch(trial, attempt)):
        for event in drain(volume, layout.events(trial, attempt)):
            if isinstance(event, ReportEvent):
                firsts.setdefault(event.step, event.value)
        attempt += 1
    return firsts


def load_trials(config: StudyConfig, cache_dir: Path) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read as a fresh reader (another machine, another process) would."""
    volume = study_volume(config)
    storage = open_storage(volume, config.name, url=config.storage, cache_dir=cache_dir)
    study = storage.load_study(config.name)
    assert study is not None
    return study.get_trials()
