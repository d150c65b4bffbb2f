"""Optuna's LightGBM pruning example, moved over (optuna-examples, lightgbm/lightgbm_integration.py).

Changed from the original: the import lines (``import hpo`` for the type
hint; the callback from ``optuna_integration``, where Optuna's docs now point),
a conditional boosting type in the manner of optuna-examples' xgboost_simple.py
(``drop_rate`` exists only for dart), ``search_space(trial)`` declaring that
space, and a fixed split (``random_state``) so test runs repeat. The objective
itself, its ``suggest_*`` calls with their ranges and the pruning callback are
as Optuna wrote them: the callback reports the validation AUC at every boosting
round and asks ``trial.should_prune()``, and checks the study's direction.
"""

import lightgbm as lgb
import numpy as np
import optuna_integration
import sklearn.datasets
import sklearn.metrics
from sklearn.model_selection import train_test_split

import hpo


def search_space(trial):
    trial.suggest_categorical("boosting_type", ["gbdt", "dart"])
    trial.suggest_float("bagging_fraction", 0.4, 1.0)
    trial.suggest_int("bagging_freq", 1, 7)
    trial.suggest_int("min_child_samples", 5, 100)
    if trial.params["boosting_type"] == "dart":
        trial.suggest_float("drop_rate", 1e-8, 1.0, log=True)


def objective(trial: hpo.Trial) -> float:
    data, target = sklearn.datasets.load_breast_cancer(return_X_y=True)
    train_x, valid_x, train_y, valid_y = train_test_split(data, target, test_size=0.25, random_state=0)
    dtrain = lgb.Dataset(train_x, label=train_y)
    dvalid = lgb.Dataset(valid_x, label=valid_y)

    param = {
        "objective": "binary",
        "metric": "auc",
        "verbosity": -1,
        "boosting_type": trial.suggest_categorical("boosting_type", ["gbdt", "dart"]),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.4, 1.0),
        "bagging_freq": trial.suggest_int("bagging_freq", 1, 7),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 100),
    }
    if param["boosting_type"] == "dart":
        param["drop_rate"] = trial.suggest_float("drop_rate", 1e-8, 1.0, log=True)

    # Add a callback for pruning.
    pruning_callback = optuna_integration.LightGBMPruningCallback(trial, "auc")
    gbm = lgb.train(param, dtrain, valid_sets=[dvalid], callbacks=[pruning_callback])

    preds = gbm.predict(valid_x)
    pred_labels = np.rint(preds)
    accuracy = sklearn.metrics.accuracy_score(valid_y, pred_labels)
    return accuracy
