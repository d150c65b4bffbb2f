"""``hpo secret set|delete`` against the fake RunPod over HTTP: the secret a remote controller's pod reads its key from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpo.cli import main
from hpo.fake_runpod import FakeRunPod

KEY = "rpa_account_key_for_secret_tests"
CONTROLLER_KEY = "rpa_controller_only_key_7781"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod]:
    with FakeRunPod(api_keys={KEY}, workdir=tmp_path / "fake", pod_command=["sleep", "60"]) as server:
        for name, value in server.client_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("RUNPOD_API_KEY", KEY)
        yield server


def test_set_creates_then_replaces_the_secret_and_never_prints_the_key(
    fake: FakeRunPod, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTROLLER_KEY", CONTROLLER_KEY)
    assert main(["secret", "set", "--study", "demo-pods", "--studies", str(REPO / "studies.yaml"), "--yes"]) == 0
    assert fake.secret_names() == ["hpo_runpod_api_key"]
    assert "hpo_runpod_api_key: created" in capsys.readouterr().out
    assert main(["secret", "set", "--yes", "--key-env", "CONTROLLER_KEY", "--json"]) == 0
    shown = capsys.readouterr()
    assert json.loads(shown.out)["done"] == "replaced its value"
    assert KEY not in shown.out + shown.err and CONTROLLER_KEY not in shown.out + shown.err


def test_delete_removes_it_and_says_when_there_is_none(fake: FakeRunPod, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secret", "set", "--name", "ctl/key", "--yes"]) == 0
    assert main(["secret", "delete", "--name", "ctl/key", "--yes"]) == 0
    assert fake.secret_names() == []
    assert main(["secret", "delete", "--name", "ctl/key", "--yes"]) == 1
    assert "RunPod secret ctl/key: not found" in capsys.readouterr().out


def test_it_asks_first_and_refuses_to_guess_without_a_terminal(
    fake: FakeRunPod, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["secret", "set"]) == 2  # stdin is no terminal here
    assert "no terminal to ask on: add --yes" in capsys.readouterr().err
    monkeypatch.setenv("EMPTY_KEY", " ")
    assert main(["secret", "set", "--yes", "--key-env", "EMPTY_KEY"]) == 2
    assert "$EMPTY_KEY is empty" in capsys.readouterr().err
    assert main(["secret", "set", "--study", "demo", "--studies", str(REPO / "studies.yaml"), "--yes"]) == 2
    assert "runs its trials locally" in capsys.readouterr().err
    assert fake.secret_names() == []
