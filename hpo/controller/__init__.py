"""The controller: owns a study and drives its trials through a backend."""

from __future__ import annotations

from hpo.controller._build import build_controller, make_backend, open_study_volume
from hpo.controller._controller import Controller, RunSummary, TrialRun
from hpo.controller._progress import LineProgress, LiveProgress, ProgressSink, StudyTally

__all__ = [
    "Controller",
    "LineProgress",
    "LiveProgress",
    "ProgressSink",
    "RunSummary",
    "StudyTally",
    "TrialRun",
    "build_controller",
    "make_backend",
    "open_study_volume",
]
