"""The controller: ask -> write spec -> launch -> poll events -> report / prune -> tell.

It owns the study: it alone writes the journal, specs and control files (it
holds the study's lease), and it is the only party that talks to Optuna. It
runs one poll cycle at a time, in one thread:

1. renew the lease;
2. list every live worker of the study (one backend call); a second worker
   of one attempt is metered and terminated, and a worker no running trial
   owns is terminated once it has outlived a short grace;
3. read the new bytes of each running attempt's event file and apply them as
   one batch: every report reaches the study (the first value for a step
   wins), a final event already written (``done``, ``pruned``, ``error``) is
   the verdict, and only then, for a trial still running, the pruner is asked
   once; a prune writes ``control.json`` and terminates the worker in this cycle;
4. an attempt whose worker is gone without a verdict was preempted, killed
   or interrupted by an infrastructure fault: the trial's next attempt
   resumes from its checkpoint, up to ``budget.max_attempts``;
5. launch new trials up to ``budget.concurrency`` and ``budget.trials``
   (each seeded sampler draws from a stream of its trial number's own, so a
   resumed study never repeats the first run's parameters);
6. flush the journal to the volume.

Faults of the provider never end a run that retrying can fix: while its API
is unreachable (5xx, 429, timeouts) a poll applies what the workers wrote and
decides nothing that needs the listing (no relaunch, no launch), says once a
minute how long the outage has lasted, and keeps the lease. A create with no
clear answer is never repeated before a listing has said whether the worker
exists. What retrying cannot fix (a bad key, an empty balance) ends the run.
After ``budget.max_failures_in_a_row`` trials failed with the same error,
nothing more is launched. A controller whose journal was superseded by a
newer controller's epoch (see :mod:`hpo.journal`) stops at its next flush,
before acting on anything.

Between steps 2 and 3 the cost meter books what the listing shows (every
attempt's worker from its creation to the poll it was last seen in), and the
budget guard compares the spend, projected to the next poll, with
``budget.usd`` and ``budget.gpu_hours``: when it reaches them, the controller
stops launching, writes ``{"action": "stop"}`` to each running trial's
``control.json`` and terminates its worker; those trials stay RUNNING, and a
later run (with a bigger budget) resumes them from their checkpoints. A launch
is refused before it happens when the new worker's rate would reach the
budget within one poll. At the end of a run the provider's bill replaces the
meter's estimates (see :mod:`hpo.cost`).

Between two polls the controller looks for ``hpo stop``'s request (at most
every 10 seconds: :mod:`hpo.controller._stop`) and, asked, ends its run as
Ctrl-C does: running trials go on, for the next run to adopt. A controller
that runs on a pod of its own (``hpo run --remote``) books that pod's cost
every poll (``own_cost``): it counts in the spend and the budget as a worker's
does.

The journal is also flushed before every side effect in the world (launch,
terminate, control file), so a controller killed at any instant leaves a
journal that explains everything it did. A new controller rebuilds its state
from the journal, the event files and the backend's live workers: it adopts
the workers of current attempts, terminates strays, and re-reads every event
file from the start, reporting only the steps the study lacks.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from hpo.backends import AttemptRef, Backend, WorkerHandle
from hpo.code import load_search_space, sample_search_space
from hpo.config import StudyConfig
from hpo.controller import _recovery
from hpo.controller._costs import CostKeeper
from hpo.controller._fleet import Fleet
from hpo.controller._progress import ProgressSink, StudyTally
from hpo.controller._pruning import absorb_told, install_fast_pruner, may_ask, prune_order, should_prune
from hpo.controller._runs import RunSummary, TrialRun
from hpo.controller._stop import StopWatch
from hpo.cost import ControllerCost
from hpo.errors import (
    ApiUnavailableError,
    BalanceError,
    CapacityError,
    JournalFencedError,
    LaunchUnknownError,
    ObjectiveError,
)
from hpo.events import Event, EventTail, FinalEvent
from hpo.journal import StudyStorage
from hpo.layout import StudyLayout
from hpo.lease import Lease
from hpo.spec import TrialSpec, declaration
from hpo.trial_attrs import (
    ATTR_ATTEMPTS,
    ATTR_BUDGET_STOPS,
    ATTR_ERROR,
    ATTR_INTERRUPTION,
    ATTR_PREEMPTIONS,
    ATTR_PRUNE_ORDER,
    ATTR_QUEUED,
    int_attr,
    is_reserved,
)
from hpo.volume import Volume

log = logging.getLogger(__name__)


MAX_QUEUE_DELAY = 300.0  # seconds between launch tries for a trial no GPU type has room for
FINISHED_NAMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}


class Controller:
    """Drives one study to ``budget.trials`` finished trials.

    Its parts, each in its own module: :class:`~hpo.controller._fleet.Fleet`
    (the provider's listing, outages, duplicates, strays),
    :class:`~hpo.controller._costs.CostKeeper` (meter, budget guard, bills),
    :mod:`~hpo.controller._pruning` (when to ask, what a prune writes) and
    :mod:`~hpo.controller._recovery` (adopt, resume, unpark). This class is
    the loop that ties them together and the only one that tells the study.

    Args:
        config: The study, validated.
        volume: Its volume.
        storage: Its Optuna storage (opened as the writer).
        backend: Where attempts run.
        lease: The study's lease (acquired by :meth:`run`).
        code_sha: The objectives snapshot trials run (None: import from the installed package).
        progress: Where news goes.
        clock: Monotonic clock; ``sleep`` waits between cycles. Both injectable.
        wall_clock: Epoch seconds on the provider's clock (pods' creation times are on it), for
            billing; injectable so a fake provider's clock can stand in.
        dashboard_plot: Push the cost/loss plot to optuna-dashboard at the end of a run (it costs
            a second of plotly and pandas; unit tests of the loop turn it off).
        own_cost: What the machine this controller runs on has cost so far, where it bills the
            study (a remote controller's pod: :mod:`hpo.remote`); asked once per poll with the
            provider's time (``wall_clock``), counted in the study's spend and budget. None: the
            controller costs the study nothing (a laptop).
    """

    def __init__(
        self,
        config: StudyConfig,
        *,
        volume: Volume,
        storage: StudyStorage,
        backend: Backend,
        lease: Lease,
        code_sha: str | None,
        progress: ProgressSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        dashboard_plot: bool = True,
        own_cost: Callable[[float], ControllerCost | None] | None = None,
    ) -> None:
        self.config = config
        self.volume = volume
        self.storage = storage
        self.backend = backend
        self.lease = lease
        self.code_sha = code_sha
        self.progress = progress or ProgressSink()
        self.clock = clock
        self.sleep = sleep
        self.wall_clock = wall_clock
        self.layout = StudyLayout(config.name)
        self.runs: dict[int, TrialRun] = {}
        self.study: optuna.Study | None = None
        self.tally = StudyTally(config.name, config.budget.trials)
        self.launch_stopped: str | None = None  # why no more launches (balance or budget out), once it happens
        self.fleet = Fleet(
            config.name, backend, self.progress, clock=clock, sleep=sleep, poll_interval=config.poll_interval
        )
        self.costs = CostKeeper(config, storage, backend, clock=clock, wall_clock=wall_clock, dashboard_plot=dashboard_plot)
        self._stopped_now: set[AttemptRef] = set()  # workers the budget stop terminated in this cycle
        self._failure_streak: tuple[str | None, int] = (None, 0)  # the last failure's error, and how many in a row
        self._search_space: Callable[[Any], object] | None = None  # a define-by-run study's, loaded by begin()
        self.stop_watch = StopWatch(volume, config.name, lease, clock=clock)
        self.stop_requested: str | None = None  # why `hpo stop` ended the run, once it did
        self._own_cost = own_cost

    # -- the run ------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Run poll cycles until the study's trial budget is spent and nothing runs."""
        started = self.clock()
        fenced = False
        try:
            self.begin()
            while True:
                self.cycle()
                if not self.runs and self._trials_left() == 0:
                    break
                if self.launch_stopped and all(run.queued_until is not None for run in self.runs.values()):
                    # Queued trials and those stopped for the budget alike stay RUNNING, for a later run.
                    self.progress.message(f"stopped launching: {self.launch_stopped}{self._resume_hint()}")
                    break
                self.stop_requested = self.stop_watch.requested()
                if self.stop_requested is not None:
                    # As Ctrl-C: running trials go on, and the next `hpo run` adopts them.
                    self.progress.message(f"{self.stop_requested}{self._resume_hint()}")
                    break
                self.sleep(self.config.poll_interval)
            # Warm workers with nothing left to run end now, before the wait and the bill: their bills are whole.
            self.backend.wind_down()
            self.fleet.await_unowned({run.ref for run in self.runs.values()})
            self.backend.wind_down()  # those that were still stopping a pruned attempt are idle now
            self.costs.settle(self._study, self._running_ids())
        except JournalFencedError:
            # A newer controller drives the study now: touch nothing, not even our own records.
            fenced = True
            raise
        except BaseException:
            self.costs.save_on_the_way_out(self._running_ids())
            raise
        finally:
            try:
                if not fenced:
                    self.storage.flush()  # may fail (the volume is down): the rest still happens
            finally:
                self.progress.stop(self.tally)
                self.backend.close()
                if not fenced:
                    self.lease.release()
        return self.summary(self.clock() - started)

    def begin(self) -> None:
        """Take the lease, open the study and adopt what an earlier controller left running.

        :meth:`run` calls it first; tests call it, then :meth:`cycle`, one poll at a time.
        """
        self.lease.acquire()
        if self.config.space_source == "search_space":
            # Before the study changes: a module that cannot give its space stops the run at once.
            self._search_space = load_search_space(self._objectives, self.config.objective)
        self.study = optuna.create_study(
            study_name=self.config.name,
            storage=self.storage.optuna,
            sampler=self.config.sampler.build(),
            pruner=self.config.build_pruner(),
            direction=self.config.direction,
            load_if_exists=True,
        )
        install_fast_pruner(self.study)  # reads the history once: a percentile pruner's ask then never does
        if self.study.metric_names != [self.config.metric]:
            # optuna-dashboard then says "val_loss", not "Objective 0". Experimental in Optuna; stable enough.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                self.study.set_metric_names([self.config.metric])
        self.storage.flush()
        self.costs.load(self.study)
        live = self.fleet.wait_for_listing(self.lease.renew)
        self.costs.recover(live)
        _recovery.adopt_all(self, self.study, live)
        self.fleet.end_strays(live, {run.ref for run in self.runs.values()})
        if self.runs:
            self.message(f"adopted {len(self.runs)} running trial(s): {', '.join(str(n) for n in sorted(self.runs))}")
        self.progress.start(self.tally)

    def cycle(self) -> None:
        """One poll cycle (see the module docstring)."""
        self.lease.renew()
        live = self.fleet.look()  # None while the provider's API cannot be reached: events still flow
        self._stopped_now.clear()
        if live is not None:
            self.backend.reap_dead()
        reason = self.costs.book(live)
        if reason is not None:
            self._stop_for_budget(reason, live or {})
        if live is not None:
            self.fleet.settle_extras()
        sizes = self.volume.sizes([run.tail.key for run in self.runs.values()] + self.costs.following())
        self.costs.drain(live, sizes)
        # Read the event files of every run the loop below polls at once (over S3, a round trip or
        # two for all, not one each). Only those: a read taken here is applied there, never dropped.
        polled = [run for run in self.runs.values() if run.queued_until is None and (live is None or not run.unconfirmed)]
        batches = dict(zip((run.number for run in polled), EventTail.poll_many([run.tail for run in polled], sizes), strict=True))
        for run in list(self.runs.values()):
            if run.queued_until is not None:
                if live is not None and not self.launch_stopped and self.clock() >= run.queued_until:
                    self._launch(run)
                continue
            if live is None:
                # Nobody can say which workers live: apply what they wrote, decide nothing about their end.
                self._apply_batch(run, batches.pop(run.number) if run.number in batches else run.tail.poll(sizes.get(run.tail.key)))
                continue
            if run.unconfirmed and not self._confirm_launch(run, live):
                continue
            run.handle = live.get(run.ref)
            if run.stopping and run.handle is not None and run.ref not in self._stopped_now:
                # Told to stop but still listed (launched just before the stop, or slow to die): again.
                self.backend.terminate(run.handle)
                self.costs.ended(run.ref)
            self._apply_batch(run, batches.pop(run.number) if run.number in batches else run.tail.poll(sizes.get(run.tail.key)))
            if not run.finished and run.handle is not None:
                self._enforce_time_limit(run)
            if not run.finished and run.handle is None:
                if run.stopping:
                    self._park(run)
                else:
                    self._attempt_ended(run)
        if live is not None:
            self.fleet.sweep_strays(live, {run.ref for run in self.runs.values()})
            self._launch_new_trials()
            if self.launch_stopped or len(self.runs) < self.config.budget.concurrency:
                # Fewer runs than slots after asking: nothing new will be asked (no trials left, or
                # launching stopped), so a warm worker with nothing to run would only bill its idle limit.
                self.backend.wind_down()
        self._refresh_tally()
        own = self._own_cost(self.wall_clock()) if self._own_cost is not None else None
        if own is not None:
            self.costs.note_controller(own)
        self.costs.save(self._running_ids())
        self.storage.flush()

    def message(self, text: str) -> None:
        """One line of news for the user."""
        self.progress.message(text)

    @property
    def _study(self) -> optuna.Study:
        assert self.study is not None, "begin() first"
        return self.study

    def _running_ids(self) -> dict[int, int]:
        return {run.number: run.trial_id for run in self.runs.values()}

    def _resume_hint(self) -> str:
        left = len(self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        return f"; {left} trial(s) left to resume with `hpo run --study {self.config.name}`" if left else ""

    def _confirm_launch(self, run: TrialRun, live: Mapping[AttemptRef, WorkerHandle]) -> bool:
        """A create with no clear answer: adopt the worker the listing shows, or launch again if there is none.

        True when the run goes on to the usual checks this poll (its worker found,
        or its attempt began and is already over); False when it was launched again.
        """
        run.unconfirmed = False
        if run.ref in live or self.volume.exists(run.tail.key):
            return True  # it exists (or existed: its events say what became of it)
        self.message(f"trial {run.number}: attempt {run.attempt} was never created; launching it again")
        self._launch(run)
        return False

    # -- events -------------------------------------------------------------------------

    def _apply_batch(self, run: TrialRun, events: list[Event]) -> None:
        """Apply one poll's events of a running attempt, then ask the pruner once (see :mod:`._pruning`)."""
        new_reports = 0
        for index, event in enumerate(events):
            if event.type == "report" and event.step not in run.reported:
                new_reports += 1
            self.apply_event(run, event)
            if run.finished:
                self.costs.last_words(run.ref, events[index + 1 :])  # read already; the verdict came first
                return
        if may_ask(run, new_reports, self.config.fidelity.max_step) and should_prune(self._study, run):
            # The worker ran on while the pruner was asked: a verdict it wrote since this poll's read wins
            # (a warm attempt can finish within one poll), and new reports are asked about afresh.
            late = run.tail.poll()
            if any(event.type == "report" or isinstance(event, FinalEvent) for event in late):
                self._apply_batch(run, late)
                return
            for event in late:
                self.apply_event(run, event)
            assert run.last_step is not None
            self._prune(run, run.last_step)

    def apply_event(self, run: TrialRun, event: Event) -> None:
        """Record one event of the run's attempt in the study (reports never ask the pruner here)."""
        storage = self.storage.optuna
        if isinstance(event, FinalEvent) and event.cpu_seconds is not None:
            self.costs.add_cpu_seconds(run.ref, run.trial_id, event.cpu_seconds)
        if event.type == "report":
            if event.step in run.reported:
                return  # a resumed attempt repeating a step: the first value stands
            optuna.Trial(self._study, run.trial_id).report(event.value, event.step)
            run.reported.add(event.step)
            if run.last_step is None or event.step >= run.last_step:
                run.last_step, run.last_value = event.step, event.value
            # No `last_step` attribute: readers take the highest intermediate value's step, and
            # writing it after every report doubled the journal (see hpo.trial_attrs).
        elif event.type == "user_attr":
            if is_reserved(event.key):
                # A pod may write anything into its event file: our bookkeeping is not its to change.
                log.warning("trial %d: ignoring user attribute %r from its worker: the key is reserved", run.number, event.key)
                return
            storage.set_trial_user_attr(run.trial_id, event.key, event.value)
        elif event.type == "done":
            self.finish(run, TrialState.COMPLETE, event.value)
        elif event.type == "pruned":
            self.finish(run, TrialState.PRUNED, None)
        elif event.type == "error":
            storage.set_trial_user_attr(run.trial_id, ATTR_ERROR, event.message)
            log.warning("trial %d failed: %s", run.number, event.message)
            self.finish(run, TrialState.FAIL, None, error=event.message)
        elif event.type == "preempted":
            pass  # the worker goes away next; _attempt_ended launches the next attempt
        elif event.type == "interrupted":
            # No verdict on the trial: like a preemption, the next attempt resumes it (and it counts).
            run.interruption = event.cause
            storage.set_trial_user_attr(run.trial_id, ATTR_INTERRUPTION, f"attempt {run.attempt}: {event.cause}")
            log.warning("trial %d attempt %d interrupted: %s", run.number, run.attempt, event.cause)
        elif event.type == "stopped":
            # An ordered stop (budget): the trial stays RUNNING, resumable by a later run.
            self._park(run)

    def _prune(self, run: TrialRun, step: int) -> None:
        # Tell first and flush, then act: a crash in between leaves a journal
        # that says "pruned" (and what the decision saw), and the next controller only has to clean up.
        order = prune_order(run, step)
        self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_PRUNE_ORDER, order)
        self.finish(run, TrialState.PRUNED, None)
        self.volume.write_json(self.layout.control(run.number), order)
        if run.handle is not None:
            self.backend.terminate(run.handle)
            self.costs.ended(run.ref)
        self.costs.follow(run.ref, run.tail)  # its last words (CPU time) may still come

    def _enforce_time_limit(self, run: TrialRun) -> None:
        """Fail a trial whose attempt has run longer than ``budget.max_trial_seconds`` (a hung objective).

        The attempt's start is its worker's billing start as the provider
        reports it (else its launch, or the first poll of this controller that
        saw it), never what the worker wrote.
        """
        limit = self.config.budget.max_trial_seconds
        if limit is None or run.handle is None:
            return
        now = self.wall_clock()
        if run.started_at is None:
            billing = run.handle.billing
            started = billing.started_at if billing is not None and billing.started_at is not None else now
            run.started_at = min(started, now)
        if now - run.started_at < limit:
            return
        reason = f"attempt {run.attempt} ran past budget.max_trial_seconds = {limit:g}s; stopped"
        self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_ERROR, reason)
        log.warning("trial %d: %s", run.number, reason)
        handle = run.handle
        self.finish(run, TrialState.FAIL, None, error="max_trial_seconds")  # told and flushed before acting
        self.volume.write_json(self.layout.control(run.number), {"action": "stop", "reason": reason})
        self.backend.terminate(handle)
        self.costs.ended(run.ref, now)
        self.costs.follow(run.ref, run.tail)

    def _park(self, run: TrialRun) -> None:
        """Leave a stopped trial RUNNING for a later run to resume (its worker is gone or going)."""
        del self.runs[run.number]
        run.finished = True
        self.costs.write_trial_attrs(run.number, run.trial_id)
        self.message(f"trial {run.number} stopped at step {run.last_step}; a later run resumes it")

    def finish(self, run: TrialRun, state: TrialState, value: float | None, error: str | None = None) -> None:
        """Tell the study the trial's result, flush, and stop watching it."""
        self._count_failure(state, error)
        # Optuna takes a pruned trial's value from its last report; skip_if_finished covers a
        # trial a previous controller told just before it crashed.
        values = [value] if state == TrialState.COMPLETE and value is not None else None
        # A told trial's attributes are frozen: its cost as of now goes in first (the records,
        # which stay writable, follow the worker to its end and the bill).
        told_before = self.storage.optuna.get_trial(run.trial_id).state.is_finished()
        if not told_before:
            self.costs.write_trial_attrs(run.number, run.trial_id)
        self._study.tell(run.number, state=state, values=values, skip_if_finished=True)
        absorb_told(self._study, self.storage.optuna, run.trial_id)
        self.storage.flush()
        run.finished = True
        del self.runs[run.number]
        tally = self.tally
        # The tally counts as trials finish (a poll never rescans the history). Before its first
        # look (adoption in begin()), that look counts this trial; one told before was counted then.
        if tally.started_at is not None and not told_before:
            tally.complete += state == TrialState.COMPLETE
            tally.pruned += state == TrialState.PRUNED
            tally.failed += state == TrialState.FAIL
            if state == TrialState.COMPLETE and value is not None and math.isfinite(value):
                best = tally.best_value
                if best is None or (value < best if self.config.direction == "minimize" else value > best):
                    tally.best_value, tally.best_trial = value, run.number
        self._refresh_tally()
        shown = value if value is not None else run.last_value
        self.progress.trial_finished(self.tally, run.number, FINISHED_NAMES[state], shown, run.last_step)

    def _count_failure(self, state: TrialState, error: str | None) -> None:
        """Stop launching once ``budget.max_failures_in_a_row`` trials in a row failed with the same error."""
        if state != TrialState.FAIL:
            self._failure_streak = (None, 0)
            return
        last, count = self._failure_streak
        count = count + 1 if error == last else 1
        self._failure_streak = (error, count)
        limit = self.config.budget.max_failures_in_a_row
        if count >= limit and not self.launch_stopped:
            self.launch_stopped = f"{count} trials in a row failed with the same error ({error or 'no message'})"
            self.message(f"{self.config.name}: {self.launch_stopped}; no more trials will be launched")

    def _attempt_ended(self, run: TrialRun) -> None:
        """The current attempt's worker is gone and said nothing final: try again, or give up."""
        max_attempts = self.config.budget.max_attempts
        storage = self.storage.optuna
        attrs = storage.get_trial(run.trial_id).user_attrs
        how = f"interrupted ({run.interruption})" if run.interruption else "preempted or killed"
        if run.interruption is None:
            preemptions = int_attr(attrs, ATTR_PREEMPTIONS) + 1
            storage.set_trial_user_attr(run.trial_id, ATTR_PREEMPTIONS, preemptions)
        # Attempts a budget stop ended were no failures of the trial: they do not use up its attempts.
        if run.attempt + 1 - min(int_attr(attrs, ATTR_BUDGET_STOPS), run.attempt) >= max_attempts:
            reason = (
                f"attempt {run.attempt} ended without a result ({how}); "
                f"no attempts left (budget.max_attempts = {max_attempts})"
            )
            storage.set_trial_user_attr(run.trial_id, ATTR_ERROR, reason)
            log.warning("trial %d: %s", run.number, reason)
            self.finish(run, TrialState.FAIL, None, error="no attempts left")
            return
        self.message(
            f"trial {run.number}: attempt {run.attempt} ended without a result ({how}); resuming as attempt {run.attempt + 1}"
        )
        self.start_attempt(run, run.attempt + 1)

    # -- launching ----------------------------------------------------------------------

    def _trials_left(self) -> int:
        made = len(self._study.get_trials(deepcopy=False))
        return max(0, self.config.budget.trials - made)

    def _launch_new_trials(self) -> None:
        study = self._study
        if self.launch_stopped:
            return  # no trial is asked that could not run
        while len(self.runs) < self.config.budget.concurrency and self._trials_left() > 0:
            if self.config.sampler.seed is not None:
                # A seeded stream per trial number: a resumed run never re-proposes the first run's params.
                study.sampler = self.config.sampler.build(trial_number=len(study.get_trials(deepcopy=False)))
            trial = self._ask(study)
            frozen = self.storage.optuna.get_trial(trial._trial_id)
            self.write_spec(frozen)
            run = TrialRun(trial.number, trial._trial_id, 0, EventTail(self.volume, self.layout.events(trial.number, 0)))
            self.runs[trial.number] = run
            self.start_attempt(run, 0)

    @property
    def _objectives(self) -> Path:
        """The project's objectives folder: the one the snapshot of this run's trials was made from."""
        return self.config.source.parent / "objectives"

    def _ask(self, study: optuna.Study) -> optuna.Trial:
        """A new trial with its parameters sampled: from studies.yaml's space, or by the module's ``search_space``.

        A ``search_space(trial)`` that raises fails the new trial (told and
        flushed, so no later run takes it for a running one) and ends the run
        with :class:`~hpo.errors.ObjectiveError`: the next trial would fail alike.
        """
        if self._search_space is None:
            return study.ask(self.config.distributions())
        trial = study.ask()
        try:
            sample_search_space(self._search_space, trial, self.config.objective, self._objectives)
        except ObjectiveError as exc:
            self.storage.optuna.set_trial_user_attr(trial._trial_id, ATTR_ERROR, str(exc))
            study.tell(trial, state=TrialState.FAIL)
            self.storage.flush()
            raise
        return trial

    def write_spec(self, trial: FrozenTrial) -> None:
        """Write what ``trial`` runs to the volume, for its workers: its parameters and their declarations."""
        spec = TrialSpec(
            study=self.config.name,
            trial=trial.number,
            objective=self.config.objective,
            params=dict(trial.params),
            search_space={name: declaration(dist) for name, dist in trial.distributions.items()},
            space_source=self.config.space_source,
            max_step=self.config.fidelity.max_step,
            eval_interval=self.config.fidelity.eval_interval,
            step_unit=self.config.fidelity.step_unit,
            checkpoint_seconds=self.config.fidelity.checkpoint_seconds,
            direction=self.config.direction,
            metric=self.config.metric,
            study_user_attrs=self._study.user_attrs,
            datetime_start=trial.datetime_start.isoformat() if trial.datetime_start else None,
            code=self.code_sha,
        )
        spec.write(self.volume, self.layout.spec(trial.number))

    def start_attempt(self, run: TrialRun, attempt: int) -> None:
        """Name attempt ``attempt`` of the run's trial in the journal, then launch it."""
        run.attempt = attempt
        run.tail = EventTail(self.volume, self.layout.events(run.number, attempt))
        run.handle = None
        run.interruption = None
        run.started_at = None
        self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_ATTEMPTS, attempt + 1)
        self.storage.flush()  # the journal names the attempt before it exists in the world
        self._launch(run)

    def _launch(self, run: TrialRun) -> None:
        """Start the run's current attempt; with no capacity anywhere, queue it and try later."""
        if self.launch_stopped:
            self._queue(run, self.launch_stopped)
            return
        refusal = self.costs.refusal()
        if refusal is not None:
            self.launch_stopped = refusal
            self.message(f"{self.config.name}: {refusal}; no more workers will be launched")
            self._queue(run, refusal)
            return
        try:
            run.handle = self.backend.launch(run.ref)
        except CapacityError as exc:
            self._queue(run, str(exc))
            return
        except LaunchUnknownError as exc:
            # The worker may exist (and bill): never create it again before a listing has answered.
            run.unconfirmed = True
            self.message(f"trial {run.number}: launch of attempt {run.attempt} unconfirmed ({exc}); checking")
            return
        except ApiUnavailableError as exc:
            self._queue(run, f"{self.fleet.provider} API unreachable ({exc})")
            return
        except BalanceError as exc:
            self.launch_stopped = str(exc)
            self.message(f"{self.config.name}: {exc}; no more pods will be launched")
            self._queue(run, str(exc))
            return
        billing = run.handle.billing
        run.started_at = billing.started_at if billing is not None and billing.started_at is not None else self.wall_clock()
        self.costs.launched(run.ref, run.handle)
        if run.queued_until is not None:
            run.queued_until, run.queue_tries = None, 0
            self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_QUEUED, False)

    def _queue(self, run: TrialRun, reason: str) -> None:
        if run.queued_until is None:
            self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_QUEUED, True)
            # Readers (`hpo status`) learn it now, not after the rest of the cycle (cost records, ...).
            self.storage.flush()
            self.message(f"trial {run.number} queued: {reason}")
        delay = min(MAX_QUEUE_DELAY, max(1.0, self.config.poll_interval) * 2**run.queue_tries)
        run.queue_tries += 1
        run.queued_until = self.clock() + delay

    def queue_now(self, run: TrialRun) -> None:
        """Launch the run's current attempt at the next poll (it was waiting for capacity)."""
        run.queued_until = self.clock()

    # -- the budget -----------------------------------------------------------------------

    def _stop_for_budget(self, reason: str, live: Mapping[AttemptRef, WorkerHandle]) -> None:
        """Stop launching, order every running trial to stop and terminate every worker of the study."""
        now = self.wall_clock()
        self.launch_stopped = reason
        running = [run for run in self.runs.values() if run.queued_until is None]
        self.message(
            f"{self.config.name}: {reason}; stopping {len(running)} running trial(s): "
            f"a later `hpo run --study {self.config.name}` with a bigger budget resumes them"
        )
        self.storage.flush()  # the journal explains the world before the world changes
        for run in running:
            run.stopping = True
            self.volume.write_json(self.layout.control(run.number), {"action": "stop", "reason": reason})
        for ref, handle in live.items():  # a finished trial's worker on its way out bills too
            self.backend.terminate(handle)
            self._stopped_now.add(ref)
            self.costs.ended(ref, now)

    # -- reporting ----------------------------------------------------------------------

    def _refresh_tally(self) -> None:
        """Bring the progress display up to date: what runs now, costs; counts of the history once.

        A poll costs what changed, not what happened before: the finished
        trials are counted (and the best found) at this run's first look only,
        and :meth:`finish` adds each trial it tells from then on.
        """
        tally = self.tally
        if tally.started_at is None:
            trials = self._study.get_trials(deepcopy=False)
            tally.complete = sum(t.state == TrialState.COMPLETE for t in trials)
            tally.pruned = sum(t.state == TrialState.PRUNED for t in trials)
            tally.failed = sum(t.state == TrialState.FAIL for t in trials)
            best = self._best(trials)
            tally.best_value, tally.best_trial = (best.value, best.number) if best else (None, None)
        tally.running = len(self.runs)
        # A worker the provider does not call running yet is starting (a pod provisioning); so is a
        # create whose answer was lost, until a listing shows it. A queued trial has no worker at all.
        tally.queued = sum(run.queued_until is not None for run in self.runs.values())
        tally.starting = sum(
            run.queued_until is None
            and (run.unconfirmed or (run.handle is not None and run.handle.status != "running"))
            for run in self.runs.values()
        )
        now = self.clock()
        if tally.started_at is None:  # this run's first look: its pace counts only what finishes from here
            tally.started_at, tally.finished_before = now, tally.finished
        tally.now = now
        tally.spent_usd, tally.budget_usd = self.costs.spent_usd(), self.config.budget.usd
        tally.gpu_hours, tally.budget_gpu_hours = self.costs.gpu_hours(), self.config.budget.gpu_hours
        self.progress.update(tally)

    def _best(self, trials: list[FrozenTrial]) -> FrozenTrial | None:
        done = [(t.value, t) for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
        if not done:
            return None
        pick = min if self.config.direction == "minimize" else max
        return pick(done, key=lambda pair: pair[0])[1]

    def summary(self, seconds: float) -> RunSummary:
        """What the study holds now, and what this run took ``seconds`` to do."""
        trials = self._study.get_trials(deepcopy=False)
        best = self._best(trials)
        return RunSummary(
            study=self.config.name,
            complete=sum(t.state == TrialState.COMPLETE for t in trials),
            pruned=sum(t.state == TrialState.PRUNED for t in trials),
            failed=sum(t.state == TrialState.FAIL for t in trials),
            running=sum(t.state == TrialState.RUNNING for t in trials),
            best_value=best.value if best else None,
            best_trial=best.number if best else None,
            best_params=dict(best.params) if best else None,
            seconds=seconds,
            stopped=self.launch_stopped or self.stop_requested,
            spent_usd=self.costs.spent_usd(),
            gpu_hours=self.costs.gpu_hours(),
        )
