"""The agent, run in-process on a directory volume: specs, orders, restarts, objective errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_support import LAYOUT, keep_sigterm_handler, publish_trials  # noqa: F401  (an autouse fixture)

from hpo.agent import AttemptAddress, run_attempt
from hpo.code import publish_objectives
from hpo.errors import ObjectiveError
from hpo.events import DoneEvent, drain, encode_event
from hpo.spec import TrialSpec
from hpo.volume import DirectoryVolume

OBJECTIVES = {
    "good": """
        def objective(trial):
            x = trial.suggest_float("x", 0, 1)
            trial.report(x, 1)
            trial.set_user_attr("note", "hi")
            return x * 2
    """,
    "typo": """
        def objective(trial):
            return trial.suggest_float("y", 0, 1)
    """,
    "not_a_number": """
        def objective(trial):
            return "0.5 please"
    """,
    "prunes": """
        import optuna
        def objective(trial):
            trial.report(1.0, 3)
            raise optuna.TrialPruned()
    """,
    "raises": """
        def objective(trial):
            raise KeyError("missing column")
    """,
    "imports_missing": """
        import math
        import nonexistent_pkg_for_hpo_tests

        def objective(trial):
            return 1.0
    """,
    "imports_helper": """
        from objectives import helper_with_missing_dep

        def objective(trial):
            return 1.0
    """,
    "helper_with_missing_dep": """
        import os

        import nonexistent_dep_for_hpo_tests
    """,
    "syntax": """
        def objective(trial):
            return (1.0
        x = 1
    """,
    "raises_at_import": """
        import math

        raise ValueError("config.yaml: no such\\nsetting")
    """,
}


@pytest.fixture
def volume(tmp_path: Path) -> DirectoryVolume:
    volume = DirectoryVolume(tmp_path / "vol")
    publish_trials(
        volume, tmp_path / "objectives", OBJECTIVES,
        params={"x": 0.25}, search_space={"x": {"type": "float", "low": 0, "high": 1}},
    )
    return volume


def _run(volume: DirectoryVolume, tmp_path: Path, trial: int, attempt: int = 0) -> tuple[int, list]:
    code = run_attempt(AttemptAddress("s", trial, attempt, str(volume.root)), volume, cache_dir=tmp_path / "cache")
    return code, drain(volume, LAYOUT.events(trial, attempt))


def test_a_good_objective_reports_and_is_done(volume: DirectoryVolume, tmp_path: Path) -> None:
    code, events = _run(volume, tmp_path, 0)
    assert code == 0
    assert [e.type for e in events] == ["start", "report", "user_attr", "done"]
    assert events[-1].value == 0.5 and events[-1].cpu_seconds is not None


def test_a_parameter_outside_the_search_space_is_refused_by_name(volume: DirectoryVolume, tmp_path: Path) -> None:
    code, events = _run(volume, tmp_path, 1)
    assert code == 1 and events[-1].type == "error"
    assert "'y' is not in the search space of study 's'" in events[-1].message and "known: x" in events[-1].message


def test_a_non_float_result_fails_clearly(volume: DirectoryVolume, tmp_path: Path) -> None:
    code, events = _run(volume, tmp_path, 2)
    assert code == 1 and "must return a float" in events[-1].message


def test_trial_pruned_raised_by_the_objective(volume: DirectoryVolume, tmp_path: Path) -> None:
    code, events = _run(volume, tmp_path, 3)
    assert code == 0 and events[-1].type == "pruned" and events[-1].step == 3


def test_an_exception_is_recorded_with_its_traceback(volume: DirectoryVolume, tmp_path: Path) -> None:
    code, events = _run(volume, tmp_path, 4)
    assert code == 1 and events[-1].message == "KeyError: 'missing column'"
    assert "raises.py" in events[-1].traceback


def test_a_restarted_container_never_reruns_a_finished_attempt(volume: DirectoryVolume, tmp_path: Path) -> None:
    volume.append_bytes(LAYOUT.events(0, 0), encode_event(DoneEvent(value=1.0)))
    code, events = _run(volume, tmp_path, 0)
    assert code == 0 and [e.type for e in events] == ["done"]


@pytest.mark.parametrize(("order", "final"), [("prune", "pruned"), ("stop", "stopped")])
def test_an_order_in_control_json_is_obeyed_before_starting(
    volume: DirectoryVolume, tmp_path: Path, order: str, final: str
) -> None:
    volume.write_json(LAYOUT.control(0), {"action": order})
    code, events = _run(volume, tmp_path, 0)
    assert code == 0 and [e.type for e in events] == [final]


def _trial_of(name: str) -> int:
    return list(OBJECTIVES).index(name)


def test_an_import_failing_inside_the_objective_names_the_import_not_a_missing_module(
    volume: DirectoryVolume, tmp_path: Path
) -> None:
    code, events = _run(volume, tmp_path, _trial_of("imports_missing"))
    assert code == 1 and events[-1].type == "error"
    assert events[-1].message == (
        "objectives/imports_missing.py: import failed: No module named 'nonexistent_pkg_for_hpo_tests' at line 3"
    )
    assert "not found" not in events[-1].message
    assert "ModuleNotFoundError" in events[-1].traceback and "imports_missing.py" in events[-1].traceback


def test_an_import_failing_in_a_helper_names_the_helper_and_its_line(volume: DirectoryVolume, tmp_path: Path) -> None:
    code, events = _run(volume, tmp_path, _trial_of("imports_helper"))
    assert code == 1
    assert events[-1].message == (
        "objectives/imports_helper.py: import failed: No module named 'nonexistent_dep_for_hpo_tests' "
        "at objectives/helper_with_missing_dep.py line 4"
    )


def test_a_syntax_error_names_the_file_and_line(volume: DirectoryVolume, tmp_path: Path) -> None:
    code, events = _run(volume, tmp_path, _trial_of("syntax"))
    assert code == 1 and events[-1].type == "error"
    message = events[-1].message
    assert message.startswith("objectives/syntax.py: SyntaxError at line ") and "\n" not in message
    assert "SyntaxError" in events[-1].traceback


def test_an_exception_raised_at_import_names_file_line_and_stays_one_line(
    volume: DirectoryVolume, tmp_path: Path
) -> None:
    code, events = _run(volume, tmp_path, _trial_of("raises_at_import"))
    assert code == 1
    assert events[-1].message == (
        "objectives/raises_at_import.py: importing it raised ValueError at line 4: config.yaml: no such setting"
    )
    assert "raises_at_import.py" in events[-1].traceback


def test_a_missing_objective_module_is_still_called_missing(volume: DirectoryVolume, tmp_path: Path) -> None:
    sha = TrialSpec.read(volume, LAYOUT.spec(0)).code
    TrialSpec(
        study="s", trial=90, objective="nope", params={}, search_space={}, max_step=5, code=sha,
    ).write(volume, LAYOUT.spec(90))
    code, events = _run(volume, tmp_path, 90)
    assert code == 1 and events[-1].message.startswith("objective module objectives/nope.py not found")


def test_missing_environment_is_named() -> None:
    with pytest.raises(ObjectiveError, match="HPO_TRIAL, HPO_ATTEMPT"):
        AttemptAddress.from_env({"HPO_STUDY": "s", "HPO_VOLUME": "/v"})


def test_an_optuna_objective_typed_with_hpo_trial_runs_one_shot_without_a_max_step(tmp_path: Path) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    objectives = tmp_path / "objectives"
    objectives.mkdir()
    (objectives / "svc.py").write_text(
        "import hpo\n\n"
        "def objective(trial: hpo.Trial) -> float:\n"
        "    kind = trial.suggest_categorical('classifier', ['SVC', 'RandomForest'])\n"
        "    c = trial.suggest_float('svc_c', 1e-10, 1e10, log=True)\n"
        "    assert trial.study.direction.name == 'MAXIMIZE' and trial.study.metric_names == ['accuracy']\n"
        "    return 0.9 if kind == 'SVC' and c == 2.0 else 0.0\n"
    )
    sha = publish_objectives(volume, "s", objectives)
    TrialSpec(
        study="s", trial=0, objective="svc", params={"classifier": "SVC", "svc_c": 2.0},
        search_space={"classifier": {"type": "categorical", "choices": ["SVC", "RandomForest"]},
                      "svc_c": {"type": "float", "low": 1e-10, "high": 1e10, "log": True}},
        space_source="search_space", direction="maximize", metric="accuracy", code=sha,
    ).write(volume, LAYOUT.spec(0))
    code, events = _run(volume, tmp_path, 0)
    assert code == 0 and [e.type for e in events] == ["start", "done"] and events[-1].value == 0.9


def test_a_range_that_disagrees_with_the_study_fails_the_trial_naming_both(volume: DirectoryVolume, tmp_path: Path) -> None:
    sha = TrialSpec.read(volume, LAYOUT.spec(0)).code
    TrialSpec(
        study="s", trial=91, objective="good", params={"x": 0.25},
        search_space={"x": {"type": "float", "low": 0.0, "high": 0.5}}, max_step=5, code=sha,
    ).write(volume, LAYOUT.spec(91))
    code, events = _run(volume, tmp_path, 91)
    assert code == 1 and events[-1].type == "error"
    assert events[-1].message == (
        "ValueError: trial.suggest_float('x'): parameter 'x': the objective asks for float in [0.0, 1.0], but the "
        "search_space of study 's' in studies.yaml declares float in [0.0, 0.5]; make them the same (or leave the "
        "range out: trial.suggest_float('x') takes the study's)"
    )
