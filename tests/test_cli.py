"""The command line as a user meets it: help, exit codes, one-line errors, JSON, no leaked secrets.

``hpo`` runs ``python -m hpo`` in a subprocess, the real entry point; ``hpo_in_process`` calls
``hpo.cli.main`` in the test's process with the same answer (exit code, stdout, stderr with log
lines), for tests of messages and exit codes that need no interpreter start of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from studyfiles import hpo_in_process, make_workspace

from hpo.backends import AttemptRef
from hpo.backends.local import worker_env

SECRET = "rpa_TOPSECRET0123456789"


def hpo(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpo", *args], capture_output=True, text=True, cwd=cwd, env=env or dict(os.environ), timeout=180
    )


def test_help_lists_the_commands() -> None:
    result = hpo("--help")
    assert result.returncode == 0
    assert "run" in result.stdout and "status" in result.stdout
    assert hpo_in_process("run", "--help").returncode == 0


def test_unknown_study_is_one_line_on_stderr_with_exit_code_2(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path)
    result = hpo_in_process("status", "--study", "stedy", "--studies", str(studies))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unknown study 'stedy'" in result.stderr and "did you mean 'steady'" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_malformed_studies_file_names_file_study_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "studies.yaml"
    bad.write_text("studies:\n  demo:\n    objective: digits_mlp\n    search_space: {x: {type: flaot, low: 0, high: 1}}\n")
    result = hpo_in_process("run", "--study", "demo", "--studies", str(bad))
    assert result.returncode == 2
    assert "studies.yaml" in result.stderr and "'demo'" in result.stderr and "search_space.x.type" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_studies_file(tmp_path: Path) -> None:
    result = hpo_in_process("run", "--study", "demo", "--studies", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "nope.yaml" in result.stderr and "Traceback" not in result.stderr


def test_status_before_the_first_run(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path)
    env = {"HPO_CACHE_DIR": str(tmp_path / "cache")}
    result = hpo_in_process("status", "--study", "steady", "--studies", str(studies), env=env)
    assert result.returncode == 0 and "not started" in result.stdout


def test_run_json_then_status_and_no_secret_reaches_volume_logs_or_cache(tmp_path: Path) -> None:
    """The fast suite's `hpo run` end to end: the real entry point, real trial processes, a few seconds."""
    studies = make_workspace(tmp_path / "project", trials=3, concurrency=2, max_step=3, pace=0.0)
    env = {
        **os.environ,
        "HPO_CACHE_DIR": str(tmp_path / "cache"),
        "RUNPOD_API_KEY": SECRET,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "RUNPOD_S3_SECRET_KEY": SECRET,
    }
    run = hpo("run", "--study", "steady", "--studies", str(studies), "--json", env=env)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["complete"] == 3 and summary["failed"] == 0 and summary["best_trial"] is not None

    status = hpo_in_process("status", "--study", "steady", "--studies", str(studies), "--json", env=env)
    assert status.returncode == 0, status.stderr
    trials = json.loads(status.stdout)["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 3
    assert all(t["last_step"] == 3 and t["attempts"] == 1 for t in trials)

    table = hpo_in_process("status", "--study", "steady", "--studies", str(studies), env=env)
    assert table.returncode == 0 and "complete" in table.stdout and "best: trial" in table.stdout
    narrow = hpo_in_process("status", "--study", "steady", "--studies", str(studies), env={**env, "COLUMNS": "80"})
    assert narrow.returncode == 0 and "…" not in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    assert narrow.stdout.splitlines()[1].split()[:6] == ["trial", "state", "step", "last", "best", "cost"]

    for root in (tmp_path / "project" / "storage", tmp_path / "cache"):
        for path in root.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in run.stdout + run.stderr + status.stdout + table.stdout


def test_a_trial_process_gets_only_what_the_agent_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("SOME_TOKEN", SECRET)
    env = worker_env("demo", AttemptRef(3, 1), "/vol")
    assert SECRET not in env.values()
    assert env["HPO_STUDY"] == "demo" and env["HPO_TRIAL"] == "3" and env["HPO_ATTEMPT"] == "1"
    assert env["HPO_VOLUME"] == "/vol"
    assert set(env) <= {
        "HPO_STUDY", "HPO_TRIAL", "HPO_ATTEMPT", "HPO_VOLUME", "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ",
        "PYTHONPATH", "VIRTUAL_ENV", "HPO_CACHE_DIR", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
        "PYTHONUNBUFFERED",
    }


def test_an_objective_module_that_does_not_exist_is_named_before_any_trial(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path)
    studies.write_text(studies.read_text().replace("objective: steady", "objective: steddy"))
    result = hpo_in_process("run", "--study", "steady", "--studies", str(studies), env={"HPO_CACHE_DIR": str(tmp_path / "c")})
    assert result.returncode == 2
    assert "study 'steady': key 'objective'" in result.stderr and "did you mean 'steady'?" in result.stderr
    assert not (tmp_path / "storage" / "hpo").exists()


@pytest.mark.slow  # a whole `hpo run` with real trial processes
def test_a_run_whose_trials_all_fail_exits_1_and_stops_repeating_the_same_error(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path, trials=8, concurrency=1)
    (tmp_path / "objectives" / "broken.py").write_text("import nonexistent_package_xyz  # the import fails in the trial\n")
    studies.write_text(studies.read_text().replace("objective: steady\n", "objective: broken\n", 1))
    env = {**os.environ, "HPO_CACHE_DIR": str(tmp_path / "cache")}
    result = hpo("run", "--study", "steady", "--studies", str(studies), "--json", env=env)
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["complete"] == 0 and summary["failed"] == 3  # the fourth would fail the same way
    assert "3 trials in a row failed with the same error" in summary["stopped"]
    assert "nonexistent_package_xyz" in summary["stopped"]  # which import failed, not "module not found"
    assert "Traceback" not in result.stderr

    status = hpo_in_process("status", "--study", "steady", "--studies", str(studies), "--json", env=env)
    assert "nonexistent_package_xyz" in status.stdout
