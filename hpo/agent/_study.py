"""What ``trial.study`` is inside a worker: the study's name, direction and attributes, read-only.

The study itself (its journal, its other trials) lives with the controller,
the one process that talks to Optuna. A worker sees what the trial's spec
carries: enough for Optuna's integration callbacks, which read
``trial.study.direction`` (LightGBM's checks its metric against it) and, for
PyTorch Lightning under DDP, ``trial.study._storage`` (None here: that
callback then says it supports only an RDB storage in DDP, and outside DDP it
needs no storage). Anything else a study has (``best_trial``, ``trials``,
``optimize``) raises an :class:`AttributeError` that says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.study import StudyDirection


class WorkerStudy:
    """The part of :class:`optuna.Study` a trial's worker can know.

    Args:
        study_name: The study's name.
        direction: ``"minimize"`` or ``"maximize"``.
        metric: The name of the value the objective returns (studies.yaml's ``metric``), or None.
        user_attrs: The study's user attributes when the trial was asked.
    """

    #: No storage inside a worker: only the controller writes the study's journal.
    _storage: None = None

    def __init__(self, study_name: str, direction: str, metric: str | None, user_attrs: Mapping[str, Any]) -> None:
        self._name = study_name
        self._direction = StudyDirection.MAXIMIZE if direction == "maximize" else StudyDirection.MINIMIZE
        self._metric = metric
        self._user_attrs = dict(user_attrs)

    @property
    def study_name(self) -> str:
        return self._name

    @property
    def direction(self) -> StudyDirection:
        return self._direction

    @property
    def directions(self) -> list[StudyDirection]:
        return [self._direction]

    @property
    def metric_names(self) -> list[str] | None:
        """The study's metric name, as Optuna's ``Study.metric_names`` gives it."""
        return None if self._metric is None else [self._metric]

    @property
    def user_attrs(self) -> dict[str, Any]:
        """A copy of the study's user attributes as of the trial's start (setting them is the controller's job)."""
        return dict(self._user_attrs)

    @property
    def system_attrs(self) -> dict[str, Any]:
        return {}

    def _is_multi_objective(self) -> bool:
        return False  # runpod-hpo's studies have one objective

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class lacks: say why instead of a bare AttributeError.
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"trial.study.{name} is not available inside a trial of study {self._name!r}: the study's "
            "journal lives with the controller (a worker sees its name, direction, metric_names and user_attrs)"
        )

    def __repr__(self) -> str:
        return f"WorkerStudy({self._name!r}, {self._direction.name.lower()})"
