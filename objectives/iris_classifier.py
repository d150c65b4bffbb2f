"""Optuna's first example, moved over: an SVC or a random forest on iris, with a conditional space.

The objective below is Optuna's own (its README and its documentation's
first tutorial) with one line changed: ``import hpo``, for the type hint
``hpo.Trial`` (any objective that takes a ``trial`` runs as it is).

What Optuna's ``study.optimize`` did (sample each parameter where the
objective asks for it) happens in the controller, before a worker exists, so
the module also says what the study searches: ``search_space(trial)``, the
same ``suggest_*`` calls, conditions included. A trial that picks the SVC has
``svc_c`` and no ``rf_max_depth`` in its parameters.

Two changes are this project's, not the port's: scikit-learn is imported in
the objective, not at the top (the controller imports this module to run
``search_space`` and needs no training library for that, nor does
``pip install .``, which leaves scikit-learn out), and ``n_jobs=-1`` is
dropped (trials already run side by side).

A one-shot objective (it reports nothing): its study (``iris`` in
studies.yaml) needs no ``fidelity``. Iris ships with scikit-learn; nothing is
downloaded.
"""

import hpo


def search_space(trial):
    """The study's space, define-by-run: the controller calls this on each new Optuna trial."""
    classifier_name = trial.suggest_categorical("classifier", ["SVC", "RandomForest"])
    if classifier_name == "SVC":
        trial.suggest_float("svc_c", 1e-10, 1e10, log=True)
    else:
        trial.suggest_int("rf_max_depth", 2, 32, log=True)


def objective(trial: hpo.Trial) -> float:
    import sklearn.datasets
    import sklearn.ensemble
    import sklearn.model_selection
    import sklearn.svm

    iris = sklearn.datasets.load_iris()
    x, y = iris.data, iris.target

    classifier_name = trial.suggest_categorical("classifier", ["SVC", "RandomForest"])
    if classifier_name == "SVC":
        svc_c = trial.suggest_float("svc_c", 1e-10, 1e10, log=True)
        classifier_obj = sklearn.svm.SVC(C=svc_c, gamma="auto")
    else:
        rf_max_depth = trial.suggest_int("rf_max_depth", 2, 32, log=True)
        classifier_obj = sklearn.ensemble.RandomForestClassifier(max_depth=rf_max_depth, n_estimators=10)

    score = sklearn.model_selection.cross_val_score(classifier_obj, x, y, cv=3)
    accuracy = score.mean()
    return accuracy
