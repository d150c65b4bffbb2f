"""``hpo check``: each ✗ provoked against the fake RunPod, and the f5-lr study's table with its estimate."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hpo.check import CheckLine, check_file, check_study, image_problem, registry_of
from hpo.cli import main
from hpo.config import load_study
from hpo.fake_runpod import FakeRunPod
from tests.studyfiles import REPO, VOLUME_ID, fake_runpod_for, make_workspace

API_KEY = "rpa_check_test_key"
GOOD_IMAGE = "docker.io/me/runpod-hpo-trial:0.1.0"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tmp_path / "project"


@pytest.fixture
def fake(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod]:
    with fake_runpod_for(project, tmp_path, monkeypatch, API_KEY) as server:
        yield server


def _studies(project: Path, *edits: tuple[str, str], budget: str = "") -> Path:
    """The ``pods`` study of tests/studyfiles.py with a public image, edited."""
    studies = make_workspace(project, trials=4, concurrency=2)
    text = studies.read_text().replace("image: ghcr.io/example/hpo-trial:test", f"image: {GOOD_IMAGE}")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    if budget:
        text = text.replace("budget: {trials: 4, concurrency: 2, max_attempts: 3}", f"budget: {{trials: 4, concurrency: 2, max_attempts: 3, {budget}}}")
    studies.write_text(text)
    return studies


def _by_check(lines: list[CheckLine]) -> dict[str, CheckLine]:
    return {line.check: line for line in lines}


def _failures(lines: list[CheckLine]) -> set[str]:
    return {line.check for line in lines if line.status == "fail"}


def test_a_sound_study_passes_every_check(fake: FakeRunPod, project: Path) -> None:
    lines = check_file(_studies(project, budget="usd: 100"), "pods")
    checks = _by_check(lines)
    assert _failures(lines) == set(), lines
    assert checks["API key"].status == "ok" and "can list pods" in checks["API key"].detail
    assert checks["volume"].status == "ok" and VOLUME_ID in checks["volume"].detail and "EU-RO-1" in checks["volume"].detail
    assert checks["S3"].status == "ok" and "local_path" in checks["S3"].detail
    assert checks["image"].status == "ok" and checks["registry"].status == "ok"
    for gpu in ("NVIDIA RTX A5000", "NVIDIA RTX A4000"):
        assert checks[f"GPU {gpu}"].status in ("ok", "warn") and "spot $" in checks[f"GPU {gpu}"].detail
    estimate = checks["estimate"].detail
    assert "4 trials × 6 epochs" in estimate and "without pruning" in estimate and "assumed" in estimate
    assert checks["budget"].status == "ok"
    assert checks["volume space"].status == "warn"  # no checkpoint written yet: unknown
    assert fake.pods(include_terminated=True) == []  # nothing launched, nothing paid


def test_a_wrong_key_is_a_failure(fake: FakeRunPod, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_not_the_key")
    lines = check_file(_studies(project), "pods")
    checks = _by_check(lines)
    assert checks["API key"].status == "fail" and checks["API key"].blocks_run
    assert "RUNPOD_API_KEY" in checks["API key"].fix
    assert "rpa_not_the_key" not in json.dumps([line.as_json() for line in lines])


def test_no_key_at_all_is_a_failure(fake: FakeRunPod, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY")
    checks = _by_check(check_file(_studies(project), "pods"))
    assert checks["API key"].status == "fail" and "not set" in checks["API key"].detail


def test_an_unknown_volume_is_a_failure(fake: FakeRunPod, project: Path) -> None:
    checks = _by_check(check_file(_studies(project, (f"id: {VOLUME_ID}", "id: vol9999999")), "pods"))
    assert checks["volume"].status == "fail" and "vol9999999" in checks["volume"].detail
    assert VOLUME_ID in checks["volume"].detail  # the account's volumes are listed


def test_a_volume_in_another_data_center_is_a_failure(fake: FakeRunPod, project: Path) -> None:
    studies = _studies(project, ("data_center: EU-RO-1", "data_center: US-KS-2"), ("data_centers: [EU-RO-1]", "data_centers: [US-KS-2]"))
    checks = _by_check(check_file(studies, "pods"))
    assert checks["volume"].status == "fail" and checks["volume"].blocks_run
    assert "EU-RO-1" in checks["volume"].detail and "US-KS-2" in checks["volume"].detail
    assert "EU-RO-1" in checks["volume"].fix


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_s3_api_is_a_failure(fake: FakeRunPod, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_S3_ACCESS_KEY", "user_test")
    monkeypatch.setenv("RUNPOD_S3_SECRET_KEY", "rps_test")
    # One try: a refused connection is the answer at once, not after ten backed-off retries (~25 s).
    monkeypatch.setattr("hpo.volume._s3.MAX_ATTEMPTS", 1)
    endpoint = f"http://127.0.0.1:{_free_port()}/"
    studies = _studies(project, ("data_center: EU-RO-1, local_path: storage", f"data_center: EU-RO-1, endpoint: '{endpoint}'"))
    checks = _by_check(check_file(studies, "pods"))
    assert checks["S3"].status == "fail" and checks["S3"].blocks_run
    assert "RUNPOD_S3_ACCESS_KEY" in checks["S3"].fix
    assert "rps_test" not in checks["S3"].detail


def test_a_malformed_image_is_a_failure(fake: FakeRunPod, project: Path) -> None:
    checks = _by_check(check_file(_studies(project, (f"image: {GOOD_IMAGE}", "image: ghcr.io/Example/Trial::x")), "pods"))
    assert checks["image"].status == "fail" and checks["image"].blocks_run and "imageName" in checks["image"].detail


def test_a_private_registry_without_a_credential_is_a_failure(fake: FakeRunPod, project: Path) -> None:
    checks = _by_check(check_file(_studies(project, (f"image: {GOOD_IMAGE}", "image: ghcr.io/me/trial:1")), "pods"))
    assert checks["image"].status == "ok"
    registry = checks["registry"]
    assert registry.status == "fail" and "ghcr.io" in registry.detail and "compute.registry_auth" in registry.fix
    assert not registry.blocks_run  # a public package needs none: `hpo run` shows it and goes on


def test_an_unknown_gpu_type_is_a_failure(fake: FakeRunPod, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpo.fake_runpod import _graphql

    monkeypatch.delitem(_graphql.GPU_TYPES, "NVIDIA RTX A4000")  # RunPod's catalog no longer has it
    lines = check_file(_studies(project), "pods")
    checks = _by_check(lines)
    assert checks["GPU NVIDIA RTX A4000"].status == "fail" and "does not know" in checks["GPU NVIDIA RTX A4000"].detail
    assert checks["GPU NVIDIA RTX A5000"].status in ("ok", "warn")


def test_a_placeholder_left_is_a_failure(fake: FakeRunPod, project: Path) -> None:
    checks = _by_check(check_file(_studies(project, (f"image: {GOOD_IMAGE}", "image: ghcr.io/your-user/trial:1")), "pods"))
    assert checks["placeholders"].status == "fail" and "compute.image" in checks["placeholders"].detail


def test_a_budget_too_small_is_a_failure(fake: FakeRunPod, project: Path) -> None:
    checks = _by_check(check_file(_studies(project, budget="usd: 0.0001"), "pods"))
    assert checks["budget"].status == "fail" and "budget.usd" in checks["budget"].fix
    assert not checks["budget"].blocks_run  # the controller itself stops at the budget


def test_a_budget_covering_only_the_pruned_estimate_is_a_warning(fake: FakeRunPod, project: Path) -> None:
    base = _by_check(check_file(_studies(project, ("pruner: {type: none}", "pruner: {type: median}"), budget="usd: 100"), "pods"))
    detail = base["estimate"].detail
    full = float(detail.split(" without pruning")[0].rsplit("$", 1)[1].split()[0])
    pruned = float(detail.split(" with it")[0].rsplit("$", 1)[1])
    assert pruned < full
    shutil.rmtree(project)
    (project / "storage").mkdir(parents=True)
    budget = f"usd: {(full + pruned) / 2:.6f}"
    checks = _by_check(check_file(_studies(project, ("pruner: {type: none}", "pruner: {type: median}"), budget=budget), "pods"))
    assert checks["budget"].status == "warn"


def test_hpo_run_stops_before_launching_on_a_check_that_would_waste_money(
    fake: FakeRunPod, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_not_the_key")
    assert main(["run", "--study", "pods", "--studies", str(_studies(project)), "-q"]) == 1
    err = capsys.readouterr().err
    assert "✗ API key" in err and "not started" in err and "Traceback" not in err
    assert fake.pods(include_terminated=True) == []


def test_a_local_study_has_only_local_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    studies = make_workspace(tmp_path / "project")
    lines = check_study(load_study(studies, "mini"))
    assert [line.check for line in lines] == ["compute", "volume", "estimate"]
    assert all(line.status == "ok" for line in lines)


def test_hpo_check_f5_lr_prints_the_table_with_the_estimate(
    fake: FakeRunPod, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = yaml.safe_load((REPO / "studies.yaml").read_text())["studies"]["f5-lr"]
    study["volume"] = {"id": VOLUME_ID, "data_center": "EU-RO-1", "local_path": "storage"}
    study["compute"]["image"] = "ghcr.io/me/runpod-hpo-trial:0.1.0"  # the user's own, as the README tells them
    studies = project / "studies.yaml"
    studies.write_text(yaml.safe_dump({"studies": {"f5-lr": study}}))
    code = main(["check", "--study", "f5-lr", "--studies", str(studies)])
    out = capsys.readouterr().out
    assert "hpo check --study f5-lr" in out and "✓" in out
    assert "24 trials × 10000 updates" in out and "without pruning" in out and "budget.usd $25" in out
    # The shipped study names no registry credential for its GHCR image: the one ✗.
    assert code == 1 and "✗" in out and "registry" in out
    assert main(["check", "--study", "f5-lr", "--studies", str(studies), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert {line["check"] for line in report["lines"] if line["status"] == "fail"} == {"registry"}


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("ghcr.io/me/trial:0.1.0", None),
        ("me/trial", None),
        ("localhost:5000/trial@sha256:" + "a" * 64, None),
        ("ghcr.io/Me/Trial:1", "lowercase"),
        ("ghcr.io/me/trial::1", "not a docker image reference"),
        ("trial:", "not a docker image reference"),
    ],
)
def test_image_references_follow_the_docker_grammar(image: str, problem: str | None) -> None:
    found = image_problem(image)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_the_registry_is_the_first_component_only_when_it_is_a_host() -> None:
    assert registry_of("ghcr.io/me/trial:1") == "ghcr.io"
    assert registry_of("me/trial:1") == "docker.io"
    assert registry_of("localhost:5000/trial") == "localhost:5000"


DEFINE_BY_RUN = """
studies:
  space:
    objective: {module}
    budget: {{trials: 2}}
    volume: {{path: storage}}
"""


def _define_by_run_project(tmp_path: Path, module: str, source: str) -> Path:
    (tmp_path / "objectives").mkdir()
    (tmp_path / "objectives" / "__init__.py").write_text("")
    (tmp_path / "objectives" / f"{module}.py").write_text(source)
    studies = tmp_path / "studies.yaml"
    studies.write_text(DEFINE_BY_RUN.format(module=module))
    return studies


def test_a_define_by_run_space_is_sampled_once_by_the_check(tmp_path: Path) -> None:
    source = (
        "def search_space(trial):\n"
        "    kind = trial.suggest_categorical('kind', ['a', 'b'])\n"
        "    if kind == 'a':\n"
        "        trial.suggest_float('x', 0.0, 1.0)\n"
        "    else:\n"
        "        trial.suggest_int('n', 1, 3)\n"
        "def objective(trial):\n"
        "    return 0.0\n"
    )
    lines = {line.check: line for line in check_file(_define_by_run_project(tmp_path, "dbr", source), "space")}
    assert lines["search space"].status == "ok"
    assert "objectives/dbr.py: search_space(trial) sampled 2 (kind, " in lines["search space"].detail
    assert not (tmp_path / "storage").exists()  # sampled on a throwaway study: the study's storage is untouched


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        ("import not_installed_anywhere\ndef search_space(trial):\n    pass\n", "No module named 'not_installed_anywhere'"),
        ("def search_space(trial):\n    raise ValueError('no space yet')\n", "ValueError at objectives/dbr.py line 2: no space yet"),
    ],
    ids=["top-level-import", "raises"],
)
def test_a_define_by_run_space_that_cannot_run_here_fails_the_check_and_the_run(
    tmp_path: Path, source: str, expect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    studies = _define_by_run_project(tmp_path, "dbr", source + "def objective(trial):\n    return 0.0\n")
    lines = {line.check: line for line in check_file(studies, "space")}
    assert lines["search space"].status == "fail" and expect in lines["search space"].detail
    # `hpo run` refuses before asking the study anything: no trial is created, no storage made.
    assert main(["run", "--studies", str(studies), "--study", "space", "--quiet"]) == 1
    assert expect in capsys.readouterr().err
    assert not (tmp_path / "storage").exists()
