"""``hpo.Trial``: an Optuna trial an objective written for Optuna runs with unchanged.

The trial is built from a spec as the controller writes it, on a folder
volume; its events land in a list. Optuna's own pruning callback
(``optuna_integration.LightGBMPruningCallback``) drives it on a tiny LightGBM
model, the way an objective copied from Optuna's documentation does.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection

import hpo
from hpo.agent import AgentTrial
from hpo.errors import VolumeError
from hpo.events import ReportEvent
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec, declaration, describe, distribution
from hpo.volume import DirectoryVolume

SPACE = {
    "lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True, "step": None},
    "hidden": {"type": "int", "low": 32, "high": 512, "step": 32, "log": False},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
}
PARAMS = {"lr": 0.01, "hidden": 128, "dropout": 0.2, "activation": "tanh", "batch_size": 32}


def make_trial(
    root: Path, *, params: dict[str, Any] | None = None, space: dict[str, Any] | None = None, **spec: Any
) -> tuple[AgentTrial, list[Any]]:
    """Trial 3 of study ``s`` as its worker sees it; its events land in the returned list."""
    events: list[Any] = []
    fields = {"study": "s", "trial": 3, "objective": "mod", "max_step": 10, **spec}
    trial_spec = TrialSpec(params=PARAMS if params is None else params, search_space=SPACE if space is None else space,
                           **fields)
    return AgentTrial(trial_spec, 0, DirectoryVolume(root / "vol"), events.append), events


# ---------------------------------------------------------------- an Optuna trial


def test_hpo_trial_is_the_agents_trial_and_an_optuna_base_trial() -> None:
    assert hpo.Trial is AgentTrial
    assert issubclass(hpo.Trial, optuna.trial.BaseTrial)
    assert "Trial" in dir(hpo)


def test_import_hpo_stays_light() -> None:
    code = "import sys, hpo; print(sorted(m for m in ('optuna', 'pydantic', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_suggest_returns_the_sampled_values_with_the_types_optuna_gives(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path)
    lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    hidden = trial.suggest_int("hidden", 32, 512, step=32)
    activation = trial.suggest_categorical("activation", ["relu", "tanh"])
    batch = trial.suggest_categorical("batch_size", (16, 32, 64))
    assert (lr, hidden, activation, batch) == (0.01, 128, "tanh", 32)
    assert type(lr) is float and type(hidden) is int and type(batch) is int


def test_without_a_range_suggest_takes_the_studys(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path)
    assert trial.suggest_float("lr") == 0.01
    assert trial.suggest_int("hidden") == 128
    assert trial.suggest_categorical("activation") == "tanh"


def test_a_float_step_optuna_adjusts_agrees_with_the_same_call(tmp_path: Path) -> None:
    # Optuna lowers high to the last multiple of step (0.55 -> 0.5) on both sides alike.
    trial, _ = make_trial(tmp_path)
    assert trial.suggest_float("dropout", 0.0, 0.5, step=0.1) == 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and says nothing about it in the worker
        assert trial.suggest_float("dropout", 0.0, 0.55, step=0.1) == 0.2


@pytest.mark.parametrize(
    ("call", "asked", "declared"),
    [
        (lambda t: t.suggest_float("lr", 1e-5, 1.0, log=True), "float in [1e-05, 1.0], log", "float in [0.001, 1.0], log"),
        (lambda t: t.suggest_float("lr", 1e-3, 1.0), "float in [0.001, 1.0]", "float in [0.001, 1.0], log"),
        (lambda t: t.suggest_int("hidden", 32, 512), "int in [32, 512]", "int in [32, 512], step 32"),
        (lambda t: t.suggest_categorical("activation", ["tanh", "relu"]), "categorical, one of ['tanh', 'relu']",
         "categorical, one of ['relu', 'tanh']"),
    ],
    ids=["low", "log", "step", "choices-order"],
)
def test_a_range_that_disagrees_with_the_study_is_an_error_naming_both(
    tmp_path: Path, call: Any, asked: str, declared: str
) -> None:
    trial, _ = make_trial(tmp_path)
    with pytest.raises(ValueError) as raised:
        call(trial)
    message = str(raised.value)
    assert f"the objective asks for {asked}, but the search_space of study 's' in studies.yaml declares {declared}" in message
    assert "\n" not in message


def test_a_name_the_study_does_not_search_is_refused_by_name(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path)
    with pytest.raises(ValueError, match=r"parameter 'momentum' is not in the search space of study 's'; add it to "
                                         r"studies.yaml \(known: activation, batch_size, dropout, hidden, lr\)"):
        trial.suggest_float("momentum", 0.0, 1.0)


def test_a_conditional_name_search_space_did_not_sample_is_refused_with_what_it_did(tmp_path: Path) -> None:
    trial, _ = make_trial(
        tmp_path, params={"classifier": "SVC", "svc_c": 1.0},
        space={"classifier": {"type": "categorical", "choices": ["SVC", "RF"]},
               "svc_c": {"type": "float", "low": 1e-10, "high": 1e10, "log": True}},
        space_source="search_space", objective="iris",
    )
    with pytest.raises(ValueError) as raised:
        trial.suggest_int("rf_max_depth", 2, 32, log=True)
    assert str(raised.value) == (
        "trial.suggest_int('rf_max_depth'): parameter 'rf_max_depth' was not sampled for trial 3 of study 's': "
        "search_space(trial) in objectives/iris.py did not suggest it (sampled: classifier, svc_c); "
        "suggest it there, under the same conditions"
    )


def test_the_wrong_kind_and_half_a_range_are_errors(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path)
    with pytest.raises(ValueError, match=r"parameter 'lr' is declared as float in the search_space of study 's'.*not int"):
        trial.suggest_int("lr", 0, 1)
    with pytest.raises(ValueError, match="give both low and high, or neither"):
        trial.suggest_float("lr", 1e-3)
    with pytest.raises(ValueError, match="give low and high with step or log"):
        trial.suggest_float("lr", log=True)


def test_optuna_2_suggest_names_still_work_and_warn(tmp_path: Path) -> None:
    trial, _ = make_trial(
        tmp_path, params={"u": 0.5, "l": 0.1, "d": 0.4},
        space={"u": {"type": "float", "low": 0.0, "high": 1.0}, "l": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
               "d": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.2}},
    )
    with pytest.warns(FutureWarning, match="suggest_uniform is deprecated"):
        assert trial.suggest_uniform("u", 0.0, 1.0) == 0.5
    with pytest.warns(FutureWarning):
        assert trial.suggest_loguniform("l", 0.01, 1.0) == 0.1
    with pytest.warns(FutureWarning):
        assert trial.suggest_discrete_uniform("d", 0.0, 1.0, 0.2) == 0.4
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="disagrees|asks for"):
        trial.suggest_uniform("l", 0.01, 1.0)  # declared log: the old name does not hide the difference


def test_the_trials_attributes(tmp_path: Path) -> None:
    started = datetime.datetime(2025, 3, 1, 12, 30)
    trial, events = make_trial(tmp_path, datetime_start=started.isoformat())
    assert trial.number == 3 and trial.params == PARAMS
    assert trial.distributions == {
        "lr": FloatDistribution(1e-3, 1.0, log=True), "hidden": IntDistribution(32, 512, step=32),
        "dropout": FloatDistribution(0.0, 0.5, step=0.1), "activation": CategoricalDistribution(["relu", "tanh"]),
        "batch_size": CategoricalDistribution([16, 32, 64]),
    }
    assert trial.datetime_start == started
    assert trial.system_attrs == {} and trial.constraints == {}
    trial.set_user_attr("note", {"a": 1})
    assert trial.user_attrs == {"note": {"a": 1}}
    assert [(e.type, e.key, e.value) for e in events] == [("user_attr", "note", {"a": 1})]
    trial.params["lr"] = 5.0  # a copy: the spec is not changed through it
    assert trial.params["lr"] == 0.01
    with pytest.raises(NotImplementedError, match="constraints are not supported"):
        trial.set_constraint("c0", 1.0)


def test_the_study_a_worker_sees(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path, direction="maximize", metric="accuracy", study_user_attrs={"dataset": "iris"})
    study = trial.study
    assert study.study_name == "s" and study.direction == StudyDirection.MAXIMIZE
    assert study.directions == [StudyDirection.MAXIMIZE] and study.metric_names == ["accuracy"]
    assert study.user_attrs == {"dataset": "iris"} and not study._is_multi_objective()
    assert study._storage is None  # Lightning's DDP check reads it: "supports only RDBStorage"
    with pytest.raises(AttributeError, match=r"trial.study.best_trial is not available inside a trial of study 's'"):
        _ = study.best_trial
    assert not hasattr(study, "trials")


def test_report_and_should_prune(tmp_path: Path) -> None:
    trial, events = make_trial(tmp_path)
    trial.report(np.float64(0.5), 0)  # a pruning callback's first round is step 0, its score a NumPy float
    assert [(e.type, e.step, e.value) for e in events] == [("report", 0, 0.5)] and trial.reported == {0: 0.5}
    with pytest.raises(ValueError, match="must be finite"):
        trial.report(float("nan"), 1)
    with pytest.raises(ValueError, match="non-negative integer"):
        trial.report(1.0, 1.5)
    with pytest.raises(TypeError, match="must be a float"):
        trial.report("high", 2)  # type: ignore[arg-type]
    assert not trial.should_prune()
    DirectoryVolume(tmp_path / "vol").write_json(StudyLayout("s").control(3), {"action": "prune"})
    assert trial.should_prune()


def test_max_step_says_what_to_declare_when_the_study_has_none(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path, max_step=None)
    assert trial.resume_step == 0
    with pytest.raises(ValueError, match=r"study 's' declares no fidelity.max_step in studies.yaml"):
        _ = trial.max_step


# ---------------------------------------------------------------- the spec's declarations


@pytest.mark.parametrize(
    "dist",
    [FloatDistribution(1e-5, 1.0, log=True), FloatDistribution(0.0, 1.0, step=0.25), IntDistribution(1, 9, step=2),
     IntDistribution(1, 1024, log=True), CategoricalDistribution([None, True, 3, 0.5, "x"])],
    ids=repr,
)
def test_a_declaration_round_trips_to_the_same_distribution(dist: Any) -> None:
    assert distribution(declaration(dist)) == dist


@pytest.mark.parametrize(
    ("declared", "problem"),
    [({"type": "float", "low": 1.0, "high": 0.0}, "float parameter"), ({"type": "uniform"}, "unknown parameter type"),
     ({"type": "int", "low": 0, "high": 5, "log": "yes"}, "log must be true or false"),
     ({"type": "int", "low": 0.5, "high": 5}, "low must be an integer"),
     ({"type": "categorical", "choices": []}, "non-empty list"), ({"type": "float", "low": 0, "high": 1, "q": 1}, "q")],
)
def test_a_spec_with_a_bad_declaration_is_refused_naming_the_parameter(
    tmp_path: Path, declared: dict[str, Any], problem: str
) -> None:
    volume = DirectoryVolume(tmp_path / "vol")
    volume.write_json("spec.json", {"study": "s", "trial": 0, "objective": "m", "params": {"p": 0},
                                    "search_space": {"p": declared}, "max_step": 3})
    with pytest.raises(VolumeError, match=rf"not a valid trial spec \(.*search_space.p: .*{problem}"):
        TrialSpec.read(volume, "spec.json")


def test_describe_reads_like_the_declaration() -> None:
    assert describe(IntDistribution(2, 32, log=True)) == "int in [2, 32], log"
    assert describe(FloatDistribution(0.0, 1.0, step=0.5)) == "float in [0.0, 1.0], step 0.5"


# ---------------------------------------------------------------- Optuna's pruning callbacks


def _lightgbm_fit(trial: Any, rounds: int = 8) -> None:
    """A tiny LightGBM model trained with Optuna's pruning callback, as Optuna's LightGBM example does."""
    import lightgbm as lgb
    from optuna_integration import LightGBMPruningCallback

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    y = (x[:, 0] + 0.3 * rng.normal(size=120) > 0).astype(int)
    dtrain, dvalid = lgb.Dataset(x[:80], label=y[:80]), lgb.Dataset(x[80:], label=y[80:])
    params = {"objective": "binary", "metric": "auc", "verbosity": -1, "num_threads": 1, "min_data_in_leaf": 5}
    lgb.train(params, dtrain, num_boost_round=rounds, valid_sets=[dvalid], callbacks=[LightGBMPruningCallback(trial, "auc")])


def test_lightgbms_pruning_callback_reports_every_round(tmp_path: Path) -> None:
    trial, events = make_trial(tmp_path, direction="maximize")
    _lightgbm_fit(trial)
    assert [e.step for e in events] == list(range(8))
    assert all(isinstance(e, ReportEvent) and 0.5 <= e.value <= 1.0 for e in events)


def test_lightgbms_pruning_callback_prunes_when_the_controller_says_so(tmp_path: Path) -> None:
    trial, events = make_trial(tmp_path, direction="maximize")
    DirectoryVolume(tmp_path / "vol").write_json(StudyLayout("s").control(3), {"action": "prune"})
    with pytest.raises(optuna.TrialPruned, match="pruned at iteration 0"):
        _lightgbm_fit(trial)
    assert [e.step for e in events] == [0]


def test_lightgbms_pruning_callback_reads_the_studys_direction(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path, direction="minimize")  # AUC is higher-better: the callback refuses the study
    with pytest.raises(ValueError, match="inconsistent with the objective values in terms of study directions"):
        _lightgbm_fit(trial)
