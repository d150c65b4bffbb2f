"""A study whose controller and trials both live on an S3 volume (moto's server standing in for RunPod's S3 API).

It must run with pruning, and a second controller on another machine (a fresh
journal cache) must resume it from the volume alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState
from s3_server import ACCESS_KEY, CREDENTIALS_ENV, SECRET_KEY, make_bucket
from studyfiles import REPO, STUDIES_YAML, first_reports, load_trials, study_config, study_processes, study_volume

from hpo.controller import build_controller

pytestmark = pytest.mark.slow

# The demo-like "mini" study of the other tests, with its volume on S3.
MINI = STUDIES_YAML.split("  steady:")[0]
assert "volume: {path: storage}" in MINI and "trials: 10," in MINI


def _write(project: Path, bucket: str, endpoint: str, trials: int) -> Path:
    (project / "objectives").mkdir(parents=True, exist_ok=True)
    (project / "objectives" / "digits_mlp.py").write_text((REPO / "objectives" / "digits_mlp.py").read_text())
    studies = project / "studies.yaml"
    volume = f'volume: {{id: {bucket}, data_center: EU-RO-1, endpoint: "{endpoint}"}}'
    # Local trials run code fetched from the S3 volume: the study says it trusts that code.
    volume += "\n    compute: {backend: local, trust_volume_code: true}"
    studies.write_text(MINI.replace("volume: {path: storage}", volume).replace("trials: 10,", f"trials: {trials},"))
    return studies


def test_a_study_on_s3_runs_with_pruning_and_resumes_from_another_machine(
    moto_s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CREDENTIALS_ENV.items():
        monkeypatch.setenv(name, value)
    # Local trial processes get S3 credentials the way any boto3 program does: from a file.
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    bucket = make_bucket(moto_s3)
    project = tmp_path / "project"
    config = study_config(_write(project, bucket, moto_s3, trials=8), "mini")

    build_controller(config, cache_dir=tmp_path / "machine-a").run()
    first = load_trials(config, tmp_path / "reader-a")
    states = [t.state for t in first]
    assert len(first) == 8 and TrialState.RUNNING not in states
    assert TrialState.COMPLETE in states and TrialState.PRUNED in states, states
    volume = study_volume(config)
    assert volume.url == f"s3://{bucket}"
    assert volume.list("hpo/mini/journal/")  # the journal lives on S3
    for trial in first:
        reported = first_reports(config, trial.number)
        if trial.state == TrialState.PRUNED:
            reported = {s: v for s, v in reported.items() if s <= max(trial.intermediate_values)}
        assert trial.intermediate_values == reported

    # Another machine: a fresh cache, a bigger budget; the study goes on from the volume.
    config = study_config(_write(project, bucket, moto_s3, trials=11), "mini")
    summary = build_controller(config, cache_dir=tmp_path / "machine-b").run()
    again = load_trials(config, tmp_path / "reader-b")
    assert len(again) == 11 and summary.complete + summary.pruned + summary.failed == 11
    assert [(t.number, t.state, t.params) for t in again[:8]] == [(t.number, t.state, t.params) for t in first]
    assert study_processes(config) == []
    for info in volume.list("hpo/"):
        assert SECRET_KEY.encode() not in volume.read_bytes(info.key), info.key
