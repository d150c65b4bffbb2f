"""Define-by-run search spaces: an objective module's ``search_space(trial)``, run by the controller.

The pieces first (finding the function without importing the module, the
config's choice between it and studies.yaml, importing and running it with
one-line errors), then a controller over a scripted backend, one poll at a
time, and last Optuna's LightGBM example under ``hpo run`` with real processes.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from controller_harness import Seam
from optuna.trial import TrialState

from hpo.code import load_search_space, sample_search_space
from hpo.config import load_study
from hpo.config._space import _top_level_names
from hpo.errors import ConfigError, ObjectiveError
from hpo.journal import open_storage
from hpo.spec import TrialSpec
from hpo.volume import DirectoryVolume

REPO = Path(__file__).resolve().parent.parent

CONDITIONAL = """
    def search_space(trial):
        classifier = trial.suggest_categorical("classifier", ["SVC", "RandomForest"])
        if classifier == "SVC":
            trial.suggest_float("svc_c", 1e-10, 1e10, log=True)
        else:
            trial.suggest_int("rf_max_depth", 2, 32, log=True)


    def objective(trial):
        return 1.0
"""

STUDY = """
studies:
  {name}:
    objective: {objective}
    direction: maximize
    {extra}
    sampler: {{type: random, seed: 7}}
    pruner: {{type: none}}
    budget: {{trials: {trials}, concurrency: {concurrency}}}
    volume: {{path: storage}}
    poll_interval: 1
"""


def project(root: Path, modules: dict[str, str], *, name: str = "s", objective: str = "clf", extra: str = "",
            trials: int = 6, concurrency: int = 6) -> Path:
    """A project folder: objectives/ with ``modules`` (name -> source) and a studies.yaml of one study."""
    (root / "objectives").mkdir(parents=True, exist_ok=True)
    (root / "objectives" / "__init__.py").write_text("")
    for module, source in modules.items():
        (root / "objectives" / f"{module}.py").write_text(textwrap.dedent(source))
    studies = root / "studies.yaml"
    studies.write_text(STUDY.format(name=name, objective=objective, extra=extra, trials=trials, concurrency=concurrency))
    return studies


# ---------------------------------------------------------------- finding search_space without running the module


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("def search_space(trial): pass", True),
        ("async def search_space(trial): pass", True),
        ("search_space = make_space()", True),
        ("from objectives._spaces import search_space", True),
        ("from objectives._spaces import mlp as search_space", True),
        ("try:\n    import x\nexcept ImportError:\n    def search_space(t): pass", True),
        ("if True:\n    search_space: object = None", True),
        ("def objective(trial):\n    def search_space(t): pass", False),
        ("class Spaces:\n    def search_space(self, t): pass", False),
        ("search_space_v2 = 1", False),
    ],
)
def test_a_top_level_search_space_is_found_in_the_source(source: str, found: bool) -> None:
    assert ("search_space" in _top_level_names(ast.parse(source).body)) is found


def test_loading_the_config_never_runs_the_module(tmp_path: Path) -> None:
    studies = project(tmp_path, {"clf": "raise SystemExit('ran at import')\n" + textwrap.dedent(CONDITIONAL)})
    config = load_study(studies, "s")
    assert config.space_source == "search_space" and config.search_space is None


# ---------------------------------------------------------------- studies.yaml or the module: exactly one


def test_a_study_without_a_space_anywhere_is_refused_naming_both_places(tmp_path: Path) -> None:
    studies = project(tmp_path, {"clf": "def objective(trial):\n    return 1.0\n"})
    with pytest.raises(ConfigError) as raised:
        load_study(studies, "s")
    assert str(raised.value) == (
        f"{studies}: study 's': key 'search_space': required key missing, and objectives/clf.py defines no "
        "search_space(trial): declare the parameters here, or define search_space(trial) there"
    )


def test_a_space_in_both_places_is_refused(tmp_path: Path) -> None:
    studies = project(tmp_path, {"clf": CONDITIONAL}, extra="search_space: {x: {type: float, low: 0, high: 1}}")
    with pytest.raises(ConfigError, match=r"key 'search_space': declared here and by search_space\(trial\) in "
                                          r"objectives/clf.py: keep one of the two"):
        load_study(studies, "s")


def test_a_module_that_does_not_parse_is_named_when_the_space_is_missing(tmp_path: Path) -> None:
    studies = project(tmp_path, {"clf": "def search_space(trial:\n"})
    with pytest.raises(ConfigError, match=r"objectives/clf.py cannot be read \(SyntaxError\)"):
        load_study(studies, "s")


def test_the_metric_defaults_from_the_direction_and_fidelity_is_optional(tmp_path: Path) -> None:
    config = load_study(project(tmp_path, {"clf": CONDITIONAL}), "s")
    assert config.metric == "score" and config.fidelity.max_step is None
    assert config.build_pruner() is not None and config.distributions() == {}


# ---------------------------------------------------------------- importing and running search_space


def test_load_search_space_imports_the_function_and_puts_the_interpreter_back(tmp_path: Path) -> None:
    project(tmp_path, {"clf": CONDITIONAL})
    before_path, before_modules = list(sys.path), {n: m for n, m in sys.modules.items() if n.startswith("objectives")}
    search_space = load_search_space(tmp_path / "objectives", "clf")
    assert sys.path == before_path
    assert {n: m for n, m in sys.modules.items() if n.startswith("objectives")} == before_modules

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    kinds = set()
    for _ in range(8):
        trial = study.ask()
        sample_search_space(search_space, trial, "clf", tmp_path / "objectives")
        kinds.add(trial.params["classifier"])
        other = "rf_max_depth" if trial.params["classifier"] == "SVC" else "svc_c"
        assert len(trial.params) == 2 and other not in trial.params  # only the branch taken is sampled
    assert kinds == {"SVC", "RandomForest"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (None, "objective module objectives/clf.py not found in "),
        ("import nonexistent_pkg_for_hpo_tests\n", "objectives/clf.py: import failed: No module named "
                                                   "'nonexistent_pkg_for_hpo_tests' at objectives/clf.py line 1"),
        ("x = 1\ndef search_space(trial:\n", "objectives/clf.py: SyntaxError at objectives/clf.py line 2: "),
        ("x = 1\nraise RuntimeError('no\\ndata')\n", "objectives/clf.py: importing it raised RuntimeError at "
                                                      "objectives/clf.py line 2: no data"),
        ("search_space = 3\n", "objectives/clf.py: search_space is not a function (got int)"),
    ],
    ids=["missing", "import", "syntax", "raises", "not-a-function"],
)
def test_a_module_that_cannot_give_its_space_is_one_line(tmp_path: Path, source: str | None, message: str) -> None:
    (tmp_path / "objectives").mkdir()
    if source is not None:
        (tmp_path / "objectives" / "clf.py").write_text(source)
    with pytest.raises(ObjectiveError) as raised:
        load_search_space(tmp_path / "objectives", "clf")
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_a_search_space_that_raises_is_one_line_naming_its_line(tmp_path: Path) -> None:
    project(tmp_path, {"clf": "def search_space(trial):\n    trial.suggest_float('x', 1.0, 0.0)\n"})
    search_space = load_search_space(tmp_path / "objectives", "clf")
    with pytest.raises(ObjectiveError) as raised:
        sample_search_space(search_space, optuna.create_study().ask(), "clf", tmp_path / "objectives")
    assert str(raised.value).startswith("objectives/clf.py: search_space(trial) raised ValueError at objectives/clf.py "
                                        "line 2: ")


# ---------------------------------------------------------------- the controller


def define_by_run_seam(root: Path, module: str = CONDITIONAL, trials: int = 6) -> Seam:
    """A seam whose study ``seam`` takes its space from objectives/clf.py."""
    seam = Seam(root)
    project(root, {"clf": module}, name="seam", extra="metric: accuracy", trials=trials, concurrency=trials)
    seam.config = load_study(root / "studies.yaml", "seam")
    seam.controller = seam.new_controller()
    return seam


def test_the_controller_samples_with_search_space_and_specs_carry_only_what_was_sampled(tmp_path: Path) -> None:
    seam = define_by_run_seam(tmp_path)
    seam.controller.begin()
    seam.controller.cycle()

    trials = seam.study().trials
    assert len(trials) == 6 and {t.params["classifier"] for t in trials} == {"SVC", "RandomForest"}
    for trial in trials:
        spec = TrialSpec.read(seam.volume, seam.layout.spec(trial.number))
        assert spec.params == trial.params and set(spec.search_space) == set(trial.params)
        assert spec.distributions() == trial.distributions
        assert spec.space_source == "search_space" and spec.max_step is None
        assert (spec.direction, spec.metric) == ("maximize", "accuracy")
        assert spec.datetime_start is not None
    assert seam.study().metric_names == ["accuracy"]


def test_a_one_shot_trial_completes_with_its_value(tmp_path: Path) -> None:
    seam = define_by_run_seam(tmp_path, trials=1)
    seam.controller.begin()
    seam.controller.cycle()
    seam.write(0, {"type": "done", "value": 0.75})
    seam.backend.gone(0)
    seam.controller.cycle()
    assert seam.trial(0).state == TrialState.COMPLETE and seam.trial(0).value == 0.75


def test_reports_without_a_max_step_reach_the_pruner_at_every_step(tmp_path: Path) -> None:
    seam = define_by_run_seam(tmp_path, trials=1)
    seam.controller.begin()
    seam.controller.cycle()
    seam.reports(0, {0: 0.9, 1: 0.8, 250: 0.7})  # a callback's rounds: no last step declared
    seam.controller.cycle()
    assert seam.trial(0).intermediate_values == {0: 0.9, 1: 0.8, 250: 0.7}


def test_a_search_space_that_raises_fails_its_trial_and_stops_the_run(tmp_path: Path) -> None:
    seam = define_by_run_seam(tmp_path, module="def search_space(trial):\n    raise KeyError('lr')\n")
    seam.controller.begin()
    with pytest.raises(ObjectiveError, match=r"objectives/clf.py: search_space\(trial\) raised KeyError at "
                                             r"objectives/clf.py line 2: 'lr'"):
        seam.controller.cycle()
    [trial] = seam.study().trials
    assert trial.state == TrialState.FAIL and "search_space(trial) raised KeyError" in trial.user_attrs["error"]
    assert seam.backend.launched == []


def test_a_module_that_fails_to_import_stops_the_run_before_the_study_changes(tmp_path: Path) -> None:
    seam = define_by_run_seam(tmp_path, module="import nonexistent_pkg_for_hpo_tests\ndef search_space(t): pass\n")
    with pytest.raises(ObjectiveError, match="objectives/clf.py: import failed"):
        seam.controller.begin()
    assert not seam.volume.exists("hpo/seam/trials/0/spec.json")


def test_a_resumed_run_rewrites_a_define_by_run_spec_with_the_trials_own_space(tmp_path: Path) -> None:
    seam = define_by_run_seam(tmp_path, trials=2)
    seam.controller.begin()
    seam.controller.cycle()
    first = {n: seam.volume.read_json(seam.layout.spec(n)) for n in (0, 1)}
    seam.volume.delete(seam.layout.spec(1))
    seam.crash_and_restart()
    for number in (0, 1):
        assert seam.volume.read_json(seam.layout.spec(number)) == first[number]


def test_a_yaml_study_names_its_metric_too(tmp_path: Path) -> None:
    seam = Seam(tmp_path)
    seam.controller.begin()
    assert seam.study().metric_names == ["loss"]  # the default for a minimized study


# ---------------------------------------------------------------- Optuna's LightGBM example under `hpo run`


LGBM_STUDY = """
studies:
  lgbm:
    objective: lgbm_docs
    direction: maximize
    metric: accuracy
    sampler: {type: random, seed: 3}
    pruner: {type: median, n_startup_trials: 1, n_warmup_steps: 5}
    compute: {backend: local}
    budget: {trials: 4, concurrency: 2}
    volume: {path: storage}
    poll_interval: 0.1
"""


@pytest.mark.slow
def test_optunas_lightgbm_example_runs_under_hpo_run(tmp_path: Path) -> None:
    """Optuna's LightGBM example with its pruning callback, and a conditional space: only its import changed."""
    root = tmp_path / "project"
    (root / "objectives").mkdir(parents=True)
    (root / "objectives" / "__init__.py").write_text("")
    shutil.copy(REPO / "tests" / "objectives" / "lgbm_docs.py", root / "objectives" / "lgbm_docs.py")
    (root / "studies.yaml").write_text(LGBM_STUDY)
    env = {**os.environ, "HPO_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "hpo", "run", "--study", "lgbm", "-q"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=280, check=False)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr

    volume = DirectoryVolume(root / "storage")
    storage = open_storage(volume, "lgbm", writer=False, cache_dir=tmp_path / "reader")
    study = optuna.load_study(study_name="lgbm", storage=storage.optuna)
    assert study.metric_names == ["accuracy"]
    trials = study.trials
    assert [t.state for t in trials].count(TrialState.FAIL) == 0, [t.user_attrs.get("error") for t in trials]
    assert any(t.state == TrialState.COMPLETE for t in trials)
    assert {t.params["boosting_type"] for t in trials} == {"gbdt", "dart"}
    for trial in trials:
        assert ("drop_rate" in trial.params) == (trial.params["boosting_type"] == "dart")  # conditional
        assert trial.intermediate_values and min(trial.intermediate_values) == 0  # the callback's rounds, from 0
        spec = json.loads((root / "storage" / "hpo" / "lgbm" / "trials" / str(trial.number) / "spec.json").read_text())
        assert set(spec["search_space"]) == set(trial.params)


# ---------------------------------------------------------------- the shipped example: Optuna's first one


def test_the_iris_study_takes_its_space_from_the_module(tmp_path: Path) -> None:
    config = load_study(REPO / "studies.yaml", "iris")
    assert (config.space_source, config.search_space, config.fidelity.max_step) == ("search_space", None, None)
    assert (config.direction, config.metric) == ("maximize", "accuracy")
    search_space = load_search_space(REPO / "objectives", config.objective)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    sample_search_space(search_space, trial, config.objective, REPO / "objectives")
    assert set(trial.params) in ({"classifier", "svc_c"}, {"classifier", "rf_max_depth"})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "declared"),
    [({"classifier": "SVC", "svc_c": 1.0}, {"svc_c": {"type": "float", "low": 1e-10, "high": 1e10, "log": True}}),
     ({"classifier": "RandomForest", "rf_max_depth": 4}, {"rf_max_depth": {"type": "int", "low": 2, "high": 32, "log": True}})],
    ids=["SVC", "RandomForest"],
)
def test_the_iris_objective_runs_on_an_hpo_trial(tmp_path: Path, params: dict, declared: dict) -> None:
    from hpo.agent import AgentTrial
    from objectives import iris_classifier

    space = {"classifier": {"type": "categorical", "choices": ["SVC", "RandomForest"]}, **declared}
    spec = TrialSpec(study="iris", trial=0, objective="iris_classifier", params=params, search_space=space,
                     space_source="search_space", direction="maximize")
    accuracy = iris_classifier.objective(AgentTrial(spec, 0, DirectoryVolume(tmp_path), lambda event: None))
    assert 0.8 < accuracy <= 1.0


def test_without_a_max_step_nothing_that_needs_one_guesses_it() -> None:
    import pandas as pd

    from hpo.backends.runpod._backend import SPOT_DEADLINE_MAX_S, spot_deadline_seconds
    from hpo.report._savings import pruning_savings

    assert spot_deadline_seconds(None, None) == SPOT_DEADLINE_MAX_S  # a trial's length unknown: RunPod's longest
    assert spot_deadline_seconds(3600.0, None) < SPOT_DEADLINE_MAX_S
    frame = pd.DataFrame([{"state": "pruned", "last_step": 20, "cost_usd": 1.0, "gpu_seconds": 60.0, "cpu_seconds": 5.0}])
    assert pruning_savings(frame, None).pruned_trials == 0  # how much a pruned trial saved needs the full length
    assert pruning_savings(frame, 40).pruned_trials == 1
