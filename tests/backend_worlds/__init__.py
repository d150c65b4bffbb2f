"""Where each registered backend runs for the backend contract suite (tests/test_backend_contract.py).

One module per backend, named as in :data:`hpo.backends.BACKENDS` (``local.py``,
``runpod.py``), with:

* ``STUDY``: the study of ``studyfiles.make_workspace``'s studies.yaml that
  runs on the backend;
* ``provider(project, tmp_path, monkeypatch)``: a context manager that makes
  the backend's world exist for the test (the fake RunPod API, with the
  client's environment pointed at it) and tears it down after.

The contract suite is parametrized by the registry, so a backend registered
without a module here fails the suite by name. This package also holds what
every world's workers run: the trial specs (:func:`write_specs`), and the
variable that makes a warm worker idle (:data:`IDLE_WORKER_ENV`): every world
runs ``python -m hpo.agent`` so that, with it, the process just sleeps until
it is stopped (the warm worker's own loop is not what the backend contract tests).
"""

from __future__ import annotations

from pathlib import Path

from hpo.code import publish_objectives
from hpo.config import StudyConfig
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec
from hpo.volume import Volume

STUBBORN_TRIAL = 3
"""The trial whose objective (``steady:stubborn``) ignores SIGTERM and never ends."""

IDLE_WORKER_ENV = {"TEST_STRAY_POD": "1"}
"""Given to ``launch_worker``: the worker's process sleeps until SIGTERM (a pod's ``tests/pod_entry.py``; a local one's wrapper)."""

MAX_STEP = 200
PACE = 0.2
"""Seconds per step: trials run for minutes, far longer than any test waits for them."""


def write_specs(config: StudyConfig, volume: Volume, objectives_dir: Path) -> None:
    """Publish the objectives and write the specs of trials 0 to 3 (3: the stubborn one), as a controller would."""
    sha = publish_objectives(volume, config.name, objectives_dir)
    layout = StudyLayout(config.name)
    for trial in range(STUBBORN_TRIAL + 1):
        TrialSpec(
            study=config.name, trial=trial, objective="steady:stubborn" if trial == STUBBORN_TRIAL else "steady",
            params={"x": 0.5, "pace": PACE, "fail_trial": -1, "garbage": False},
            search_space={name: p.model_dump(mode="json") for name, p in config.search_space.items()},
            max_step=MAX_STEP, code=sha,
        ).write(volume, layout.spec(trial))
