"""The controller: owns a study and drives its trials through a backend.

Where things live:

- ``_controller.py``: the loop (ask, launch, poll, tell) and what each event does to the study;
- ``_recovery.py``: what a new controller does with trials an earlier one left running;
- ``_pruning.py``: when the pruner is asked, and the order a prune writes;
- ``_costs.py``: the cost keeper (meter, budget guard, attempt records, the bill);
- ``_fleet.py``: the provider's listing (outages, duplicate workers, strays);
- ``_runs.py``: what the controller knows of a running trial, and a run's summary;
- ``_progress.py``: what the user sees while it runs;
- ``_build.py``: a controller from a study's config (backend, volume, storage, lease);
- ``_stop.py``: ``hpo stop``'s request, and the controller's watch for it.
"""

from __future__ import annotations

from hpo.controller._build import build_controller, make_backend, open_study_volume
from hpo.controller._controller import Controller
from hpo.controller._progress import LineProgress, LiveProgress, ProgressSink, StudyTally
from hpo.controller._runs import RunSummary, TrialRun
from hpo.controller._stop import STOPPED_BY_REQUEST, StopRequest, StopWatch, request_stop, withdraw_stop

__all__ = [
    "Controller",
    "LineProgress",
    "LiveProgress",
    "ProgressSink",
    "RunSummary",
    "STOPPED_BY_REQUEST",
    "StopRequest",
    "StopWatch",
    "StudyTally",
    "TrialRun",
    "build_controller",
    "make_backend",
    "open_study_volume",
    "request_stop",
    "withdraw_stop",
]
