"""Recovery: what a new controller does with the trials an earlier one left RUNNING.

A controller may die at any instant (a crash, a closed laptop, a spot
preemption of its own host). The journal it flushed before every side
effect, the event files its workers wrote and the backend's listing are
enough for the next one to go on:

- a trial whose current attempt's worker lives is **adopted**: its earlier
  attempts' reports are replayed (only the steps the study lacks reach it),
  and its event file is read from the start;
- a verdict a worker wrote that no controller told (a crash between the two)
  is the trial's result;
- a trial whose worker is gone without a verdict is **resumed**: its next
  attempt starts from its checkpoint (the usual attempt accounting applies);
- a trial an earlier run stopped for its budget is **unparked**: its next
  attempt starts without using up one of the trial's attempts;
- a trial that was waiting for capacity, or whose current attempt no listing
  ever showed and that wrote nothing (its create got no clear answer, or the
  controller died between naming the attempt and creating it), has that same
  attempt created again: no worker ran it, so nothing is counted;
- every listed worker no running trial owns is a **stray**, terminated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.backends import AttemptRef, Backend, WorkerHandle
from hpo.config import StudyConfig
from hpo.controller._costs import CostKeeper
from hpo.controller._runs import TrialRun
from hpo.errors import HpoError, VolumeNotFoundError
from hpo.events import Event, EventTail, drain
from hpo.journal import StudyStorage
from hpo.layout import StudyLayout
from hpo.records import read_control_order
from hpo.spec import TrialSpec
from hpo.trial_attrs import ATTR_ATTEMPTS, ATTR_BUDGET_STOPS, ATTR_QUEUED, int_attr
from hpo.volume import Volume

log = logging.getLogger(__name__)

# Events of an attempt that is over and that still matter: what reached (or should reach) the study.
REPLAYED = ("report", "user_attr", "done", "pruned", "error")


class TrialDriver(Protocol):
    """What recovery needs of the controller's loop (see :class:`hpo.controller.Controller`)."""

    config: StudyConfig
    volume: Volume
    storage: StudyStorage
    layout: StudyLayout
    runs: dict[int, TrialRun]
    backend: Backend
    costs: CostKeeper

    def apply_event(self, run: TrialRun, event: Event) -> None: ...
    def finish(self, run: TrialRun, state: TrialState, value: float | None, error: str | None = None) -> None: ...
    def start_attempt(self, run: TrialRun, attempt: int) -> None: ...
    def write_spec(self, trial: FrozenTrial) -> None: ...
    def queue_now(self, run: TrialRun) -> None: ...
    def message(self, text: str) -> None: ...


def adopt_all(driver: TrialDriver, study: optuna.Study, live: Mapping[AttemptRef, WorkerHandle]) -> None:
    """Adopt, resume or finish every RUNNING trial of ``study``, given the backend's first listing."""
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        adopt(driver, frozen, live)


def adopt(driver: TrialDriver, frozen: FrozenTrial, live: Mapping[AttemptRef, WorkerHandle]) -> None:
    """Take over one RUNNING trial (see the module docstring for what becomes of it)."""
    attempts = int_attr(frozen.user_attrs, ATTR_ATTEMPTS)
    number = frozen.number
    layout = driver.layout
    run = TrialRun(number, frozen._trial_id, max(attempts - 1, 0), EventTail(driver.volume, layout.events(number, 0)))
    run.reported = set(frozen.intermediate_values)
    if run.reported:
        run.last_step = max(run.reported)
        run.last_value = frozen.intermediate_values[run.last_step]
    driver.runs[number] = run
    if not spec_is_ours(driver, number, frozen.params):
        driver.write_spec(frozen)
    control = read_control_order(driver.volume, layout.control(number))
    if control == "stop":
        driver.volume.delete(layout.control(number))  # this run decides anew whether it may go on
    if control == "prune":
        handle = live.get(run.ref)
        run.handle = handle
        driver.finish(run, TrialState.PRUNED, None)
        if handle is not None:
            driver.backend.terminate(handle)
        return
    if attempts == 0:
        driver.start_attempt(run, 0)  # asked, but the crash came before its first launch
        return
    # Earlier attempts are over: replay their reports in order, so the first value per step
    # wins; a verdict one of them wrote (a crash before it was told) is the trial's result.
    for attempt in range(run.attempt):
        if _replay(driver, run, layout.events(number, attempt)):
            return
    run.tail = EventTail(driver.volume, layout.events(number, run.attempt))
    run.handle = live.get(run.ref)
    if control == "stop" and run.handle is None:
        resume_stopped(driver, run, frozen)
        return
    never_ran = run.handle is None and not driver.volume.exists(run.tail.key)
    if never_ran and (frozen.user_attrs.get(ATTR_QUEUED) or not driver.costs.saw(run.ref)):
        # Waiting for capacity, or never created (a create with no clear answer, or a crash between
        # naming the attempt and creating it): no worker ran it, so create the same attempt again.
        driver.queue_now(run)


def resume_stopped(driver: TrialDriver, run: TrialRun, frozen: FrozenTrial) -> None:
    """A trial an earlier run stopped for its budget: keep what its attempt did, then start the next one.

    The stopped attempt may have ended on its own first (``done``), which
    then stands; otherwise its reports count and a new attempt resumes
    from the checkpoint, without using up one of the trial's attempts.
    """
    if _replay(driver, run, run.tail.key):
        return
    stops = int_attr(frozen.user_attrs, ATTR_BUDGET_STOPS) + 1
    driver.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_BUDGET_STOPS, stops)
    driver.message(f"trial {run.number}: resuming after a budget stop, as attempt {run.attempt + 1}")
    driver.start_attempt(run, run.attempt + 1)


def spec_is_ours(driver: TrialDriver, number: int, params: Mapping[str, object]) -> bool:
    """True if the trial's spec on the volume is valid and says what the study says (anyone may write the volume)."""
    name = driver.config.name
    try:
        spec = TrialSpec.read(driver.volume, driver.layout.spec(number))
    except VolumeNotFoundError:
        return False
    except HpoError as exc:
        log.warning("study %s: rewriting the spec of trial %d: %s", name, number, exc)
        return False
    if spec.study != name or spec.trial != number or spec.params != dict(params):
        log.warning("study %s: rewriting the spec of trial %d: it does not match the study", name, number)
        return False
    return True


def _replay(driver: TrialDriver, run: TrialRun, key: str) -> bool:
    """Apply what an ended attempt's event file holds; True if it held the trial's verdict."""
    for event in drain(driver.volume, key):
        if event.type in REPLAYED:
            driver.apply_event(run, event)
            if run.finished:
                return True
    return False
