"""What a pod writes never changes the controller's own records (issue 11: untrusted input from pods).

An objective runs on a machine the controller does not control and its event
file is written by that machine alone, so whatever it says of the trial's
bookkeeping (attempts, preemptions, budget stops, costs, the error) is
ignored, the attempt limits hold whatever it writes, and a study that already
holds junk under those keys (written before this rule) still shows, reports
and cleans up. Driven over the scripted backend of tests/controller_harness.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from controller_harness import Seam
from optuna.trial import TrialState
from studyfiles import hpo_in_process

from hpo.agent._trial import AgentTrial
from hpo.backends import AttemptRef
from hpo.spec import TrialSpec
from hpo.trial_attrs import RESERVED_USER_ATTRS
from hpo.volume import DirectoryVolume

HOSTILE_VALUES: list[Any] = ["x", 1e9, -1, None, [1], {"a": 1}, True]
CASES = [(key, value) for key in sorted(RESERVED_USER_ATTRS) + ["hpo:anything"] for value in HOSTILE_VALUES[:3]]


@pytest.mark.parametrize(("key", "value"), CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_a_worker_cannot_write_the_controllers_records(tmp_path: Path, key: str, value: Any) -> None:
    seam = Seam(tmp_path, trials=1, max_attempts=2)
    seam.controller.begin()
    seam.controller.cycle()
    assert seam.controller.study is not None
    before = dict(seam.controller.study.get_trials(deepcopy=False)[0].user_attrs)
    seam.write(0, {"type": "user_attr", "key": key, "value": value}, {"type": "user_attr", "key": "mine", "value": 1})
    seam.controller.cycle()
    attrs = seam.controller.study.get_trials(deepcopy=False)[0].user_attrs
    assert attrs.get(key) == before.get(key)
    assert attrs["mine"] == 1  # an objective's own attributes still land

    # Attempt limits count what the controller launched: two attempts, then the trial fails.
    seam.backend.gone(0)
    seam.controller.cycle()
    seam.write(0, {"type": "user_attr", "key": key, "value": value}, attempt=1)
    seam.backend.gone(0, attempt=1)
    seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 1)]
    assert seam.controller.study.get_trials(deepcopy=False)[0].state == TrialState.FAIL


@pytest.mark.parametrize("key", ["attempts", "budget_stops", "error", "hpo:cost"])
def test_the_agent_refuses_a_reserved_key_with_a_clear_message(tmp_path: Path, key: str) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    spec = TrialSpec(study="s", trial=0, objective="x", params={}, search_space={}, max_step=5)
    trial = AgentTrial(spec, 0, volume, lambda event: None)
    with pytest.raises(ValueError, match=rf"set_user_attr\('{key}'\): the key is reserved"):
        trial.set_user_attr(key, 1)


@pytest.mark.parametrize("value", ["x", -1, [1]], ids=repr)
def test_status_report_and_cleanup_read_junk_a_study_already_holds(tmp_path: Path, value: Any) -> None:
    seam = Seam(tmp_path, trials=1, volume="directory")  # the commands read the study's folder
    seam.controller.begin()
    seam.controller.cycle()
    storage = seam.controller.storage
    trial_id = seam.controller.study.get_trials(deepcopy=False)[0]._trial_id  # type: ignore[union-attr]
    for key in ("attempts", "preemptions", "budget_stops", "cost_usd", "gpu_seconds", "cpu_seconds", "queued", "error"):
        storage.optuna.set_trial_user_attr(trial_id, key, value)
    storage.flush()

    env = {"HPO_CACHE_DIR": str(tmp_path / "reader-cache")}
    studies = str(tmp_path / "studies.yaml")
    for command in (["status", "--json"], ["report", "--json", "--out", str(tmp_path / "report")], ["cleanup", "--dry-run"]):
        # The command line in this process (hpo.cli.main): an exception a command let through would fail the test.
        result = hpo_in_process(*command, "--study", "seam", "--studies", studies, env=env)
        assert "Traceback" not in result.stderr, (command, result.stderr)
        assert result.returncode == 0, (command, result.stderr)
        if "--json" in command:
            json.loads(result.stdout)


def test_a_hung_attempt_is_stopped_after_max_trial_seconds_and_its_trial_fails(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=2, budget="max_trial_seconds: 600")
    assert seam.config.budget.max_trial_seconds == 600
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {1: 0.5})  # then it hangs
    seam.clock.sleep(599)
    seam.controller.cycle()
    assert seam.controller.study.get_trials(deepcopy=False)[0].state == TrialState.RUNNING  # type: ignore[union-attr]
    seam.clock.sleep(2)
    seam.controller.cycle()
    trial = seam.controller.study.get_trials(deepcopy=False)[0]  # type: ignore[union-attr]
    assert trial.state == TrialState.FAIL
    assert "max_trial_seconds = 600s" in trial.user_attrs["error"]
    assert seam.backend.terminated == ["w0"]
    assert seam.volume.read_json(seam.layout.control(0))["action"] == "stop"
    assert seam.backend.launched[-1] == AttemptRef(1, 0)  # the slot goes to the next trial
