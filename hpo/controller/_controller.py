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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.backends import AttemptRef, Backend, WorkerHandle
from hpo.config import StudyConfig
from hpo.controller._progress import ProgressSink, StudyTally
from hpo.cost import (
    ATTR_COST_USD,
    ATTR_GPU_SECONDS,
    ATTR_GPU_TYPE,
    PRICES_ATTR,
    BudgetGuard,
    CostMeter,
    Spend,
    load_bills,
    save_bills,
)
from hpo.errors import (
    ApiUnavailableError,
    BalanceError,
    CapacityError,
    HpoError,
    JournalFencedError,
    VolumeNotFoundError,
    LaunchUnknownError,
)
from hpo.events import Event, EventTail, FinalEvent, drain
from hpo.journal import StudyStorage
from hpo.layout import StudyLayout
from hpo.lease import Lease
from hpo.records import read_control_order
from hpo.spec import TrialSpec
from hpo.trial_attrs import (  # noqa: F401  ATTR_* re-exported: `hpo status` and cleanup read them from here
    ATTR_ATTEMPTS,
    ATTR_BUDGET_STOPS,
    ATTR_CPU_SECONDS,
    ATTR_ERROR,
    ATTR_INTERRUPTION,
    ATTR_LAST_STEP,
    ATTR_PREEMPTIONS,
    ATTR_QUEUED,
    float_attr,
    int_attr,
    is_reserved,
)
from hpo.volume import Volume

log = logging.getLogger(__name__)


MAX_QUEUE_DELAY = 300.0  # seconds between launch tries for a trial no GPU type has room for
COST_SAVE_INTERVAL = 60.0  # seconds between saves of running attempts' cost (journal entries are not free)
RECONCILE_WINDOW = 86400.0  # seconds after an attempt ended during which its bill is read again (bills settle late)
BILL_HORIZON = 30 * 86400.0  # an attempt not on the bill after this long never will be (RunPod's default window)
DASHBOARD_PLOT_ID = "hpo-cost-vs-loss"  # the optuna-dashboard plot the controller keeps up to date
OUTAGE_NOTICE_INTERVAL = 60.0  # seconds between "API unreachable" lines while an outage lasts
STRAY_GRACE = 30.0  # seconds a worker no running trial owns may live on (a finished one exits by itself)


@dataclass
class TrialRun:
    """The controller's view of one running trial."""

    number: int
    trial_id: int
    attempt: int
    tail: EventTail
    reported: set[int] = field(default_factory=set)
    last_step: int | None = None
    last_value: float | None = None
    handle: WorkerHandle | None = None
    finished: bool = False
    queued_until: float | None = None  # no capacity: when to try launching again
    queue_tries: int = 0
    stopping: bool = False  # the budget is spent: told to stop, parked once its worker is gone
    unconfirmed: bool = False  # its create got no clear answer: the next listing says whether it exists
    interruption: str | None = None  # the current attempt said an infrastructure fault ended it
    started_at: float | None = None  # provider-clock time the current attempt's worker began (its time limit)

    @property
    def ref(self) -> AttemptRef:
        return AttemptRef(self.number, self.attempt)


@dataclass
class RunSummary:
    """What a run did, for the CLI's last line and ``--json``."""

    study: str
    complete: int
    pruned: int
    failed: int
    running: int
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, object] | None
    seconds: float
    stopped: str | None = None  # why the run ended before the study did (balance or budget out)
    spent_usd: float = 0.0  # the whole study's spend so far (all runs)
    gpu_hours: float = 0.0


class Controller:
    """Drives one study to ``budget.trials`` finished trials.

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
        self.layout = StudyLayout(config.name)
        self.runs: dict[int, TrialRun] = {}
        self.study: optuna.Study | None = None
        self.tally = StudyTally(config.name, config.budget.trials)
        self.launch_stopped: str | None = None  # why no more launches (balance or budget out), once it happens
        self.wall_clock = wall_clock
        self.meter = CostMeter()
        self.guard = BudgetGuard(config.budget.usd, config.budget.gpu_hours)
        self.budget_stopped = False
        self._horizon = config.poll_interval  # seconds until the next look, as the guard projects it
        self._last_look: float | None = None  # wall time of the last poll's listing
        self._cost_dirty: set[int] = set()  # trials whose attempt records changed since they were saved
        self._cost_saved_at = -math.inf  # monotonic time of the last save of running attempts
        self._attrs_written: dict[int, tuple[float, float, str | None]] = {}
        # Attempts pruned by this controller, read on until their last words (their CPU time).
        self._draining: dict[AttemptRef, EventTail] = {}
        self._stopped_now: set[AttemptRef] = set()  # workers the budget stop terminated in this cycle
        self._failure_streak: tuple[str | None, int] = (None, 0)  # the last failure's error, and how many in a row
        self._outage_since: float | None = None  # monotonic time the provider's API stopped answering
        self._outage_noticed = -math.inf  # when the last "unreachable" line was shown
        self._unowned_since: dict[str, float] = {}  # worker id -> when it was first seen with no running trial

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
                    left = len(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
                    resume = f"; {left} trial(s) left to resume with `hpo run --study {self.config.name}`" if left else ""
                    self.progress.message(f"stopped launching: {self.launch_stopped}{resume}")
                    break
                self.sleep(self.config.poll_interval)
            self._await_unowned_workers()
            self._settle_costs()
        except JournalFencedError:
            # A newer controller drives the study now: touch nothing, not even our own records.
            fenced = True
            raise
        except BaseException:
            self._save_costs_on_the_way_out()
            raise
        finally:
            if not fenced:
                self.storage.flush()
            self.progress.stop(self.tally)
            self.backend.close()
            if not fenced:
                self.lease.release()
        return self._summary(self.clock() - started)

    def begin(self) -> None:
        """Take the lease, open the study and adopt what an earlier controller left running.

        :meth:`run` calls it first; tests call it, then :meth:`cycle`, one poll at a time.
        """
        self.lease.acquire()
        self.study = optuna.create_study(
            study_name=self.config.name,
            storage=self.storage.optuna,
            sampler=self.config.sampler.build(),
            pruner=self.config.build_pruner(),
            direction=self.config.direction,
            load_if_exists=True,
        )
        self.storage.flush()
        self._load_costs()
        self._recover()
        self.progress.start(self.tally)

    def cycle(self) -> None:
        """One poll cycle (see the module docstring)."""
        self.lease.renew()
        live = self._look()  # None while the provider's API cannot be reached: events still flow
        self._stopped_now.clear()
        if live is not None:
            self.backend.reap_dead()
        self._book(live)
        if live is not None:
            self._settle_extras()
        sizes = self.volume.sizes([run.tail.key for run in self.runs.values()] + [t.key for t in self._draining.values()])
        self._drain_pruned(live, sizes)
        for run in list(self.runs.values()):
            if run.queued_until is not None:
                if live is not None and not self.launch_stopped and self.clock() >= run.queued_until:
                    self._launch(run)
                continue
            if live is None:
                # Nobody can say which workers live: apply what they wrote, decide nothing about their end.
                self._apply_batch(run, run.tail.poll(sizes.get(run.tail.key)))
                continue
            if run.unconfirmed and not self._confirm_launch(run, live):
                continue
            run.handle = live.get(run.ref)
            if run.stopping and run.handle is not None and run.ref not in self._stopped_now:
                # Told to stop but still listed (launched just before the stop, or slow to die): again.
                self.backend.terminate(run.handle)
                if self.meter.ended(run.ref, self.wall_clock()):
                    self._cost_dirty.add(run.number)
            self._apply_batch(run, run.tail.poll(sizes.get(run.tail.key)))
            if not run.finished and run.handle is not None:
                self._enforce_time_limit(run)
            if not run.finished and run.handle is None:
                if run.stopping:
                    self._park(run)
                else:
                    self._attempt_ended(run)
        if live is not None:
            self._sweep_strays(live)
            self._launch_new_trials()
        self._refresh_tally()
        self._save_costs()
        self.storage.flush()

    # -- the provider: outages, duplicates, strays -----------------------------------------

    def _look(self) -> dict[AttemptRef, WorkerHandle] | None:
        """One listing of the study's live workers, or None while the provider's API cannot be reached.

        An outage (5xx, 429, timeouts, refused connections, for as long as it
        lasts) never ends the run: the client has retried within its deadline,
        and the next poll tries again. Meanwhile reports still reach the
        study, and workers end themselves when their attempt is over. What
        retrying cannot fix (a bad key, an empty balance) still raises.
        """
        try:
            live = self.backend.list_live()
        except ApiUnavailableError as exc:
            now = self.clock()
            if self._outage_since is None:
                self._outage_since = now
            if now - self._outage_noticed >= OUTAGE_NOTICE_INTERVAL:
                self._outage_noticed = now
                self.progress.message(
                    f"{self.config.name}: {self._provider} API unreachable for {_duration(now - self._outage_since)}, "
                    f"retrying ({exc})"
                )
            return None
        if self._outage_since is not None:
            self.progress.message(
                f"{self.config.name}: {self._provider} API reachable again after "
                f"{_duration(self.clock() - self._outage_since)}"
            )
            self._outage_since, self._outage_noticed = None, -math.inf
        return live

    @property
    def _provider(self) -> str:
        return {"runpod": "RunPod"}.get(self.backend.name, self.backend.name)

    def _wait_for_listing(self) -> dict[AttemptRef, WorkerHandle]:
        """The first listing of a run: recovery needs it, so wait out an outage (keeping the lease)."""
        live = self._look()
        while live is None:
            self.sleep(self.config.poll_interval)
            self.lease.renew()
            live = self._look()
        return live

    def _settle_extras(self) -> None:
        """Terminate every surplus worker of an attempt (two pods with one name): it bills, so it is metered."""
        for handle in self.backend.extras():
            log.warning("terminating %s: a second worker of %s (the oldest one goes on)", handle.id, handle.ref)
            self.progress.message(f"terminating duplicate worker {handle.id} of {handle.ref}")
            self.backend.terminate(handle)

    def _confirm_launch(self, run: TrialRun, live: Mapping[AttemptRef, WorkerHandle]) -> bool:
        """A create with no clear answer: adopt the worker the listing shows, or launch again if there is none.

        True when the run goes on to the usual checks this poll (its worker found,
        or its attempt began and is already over); False when it was launched again.
        """
        run.unconfirmed = False
        if run.ref in live or self.volume.exists(run.tail.key):
            return True  # it exists (or existed: its events say what became of it)
        self.progress.message(f"trial {run.number}: attempt {run.attempt} was never created; launching it again")
        self._launch(run)
        return False

    def _sweep_strays(self, live: Mapping[AttemptRef, WorkerHandle]) -> None:
        """Terminate workers no running trial owns once they outlived :data:`STRAY_GRACE`.

        A finished or pruned trial's worker ends by itself (or was terminated,
        maybe during an outage, when that call failed); one that lives on past
        the grace bills for nothing.
        """
        owned = {run.ref for run in self.runs.values()}
        now = self.clock()
        seen = {}
        for ref, handle in live.items():
            if ref in owned:
                continue
            since = seen[handle.id] = self._unowned_since.get(handle.id, now)
            if now - since >= STRAY_GRACE:
                log.info("terminating stray worker %s (%s): no running trial owns it", handle.id, ref)
                self.backend.terminate(handle)
        self._unowned_since = seen

    # -- events -------------------------------------------------------------------------

    def _apply_batch(self, run: TrialRun, events: list[Event]) -> None:
        """Apply one poll's events of a running attempt, then ask the pruner once.

        Every report the worker wrote reaches the study, however many one poll
        reads (a worker that went on while no controller was alive wrote many).
        A final event already written (``done``, ``pruned``, ``error``) is the
        trial's verdict, whatever the pruner would have said of the reports
        before it; so the pruner is asked only after the whole batch, for a
        trial that is still running and not already at its last step (pruning
        a trial that is about to finish saves nothing and discards a result).
        """
        new_reports = 0
        for index, event in enumerate(events):
            if event.type == "report" and event.step not in run.reported:
                new_reports += 1
            self._apply(run, event)
            if run.finished:
                self._last_words(run.ref, events[index + 1 :])  # read already; the verdict came first
                return
        if new_reports and not run.stopping and not run.tail.behind:  # behind: the rest of the batch comes next poll
            self._ask_pruner(run)

    def _ask_pruner(self, run: TrialRun) -> None:
        """Prune the running trial if the study's pruner says so (asked once per poll)."""
        assert self.study is not None
        if run.last_step is None or run.last_step >= self.config.fidelity.max_step:
            return
        if optuna.Trial(self.study, run.trial_id).should_prune():
            self._prune(run, run.last_step)

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
        self._finish(run, TrialState.FAIL, None, error="max_trial_seconds")  # told and flushed before acting
        self.volume.write_json(self.layout.control(run.number), {"action": "stop", "reason": reason})
        self.backend.terminate(handle)
        if self.meter.ended(run.ref, now):
            self._cost_dirty.add(run.number)
        self._draining[run.ref] = run.tail

    def _apply(self, run: TrialRun, event: Event) -> None:
        """Record one event of the run's attempt in the study (reports never ask the pruner here)."""
        assert self.study is not None
        if isinstance(event, FinalEvent) and event.cpu_seconds is not None:
            self._add_cpu_seconds(run, event.cpu_seconds)
            if self.meter.add_cpu_seconds(run.ref, event.cpu_seconds):
                self._cost_dirty.add(run.number)
        if event.type == "report":
            if event.step in run.reported:
                return  # a resumed attempt repeating a step: the first value stands
            optuna.Trial(self.study, run.trial_id).report(event.value, event.step)
            run.reported.add(event.step)
            if run.last_step is None or event.step >= run.last_step:
                run.last_step, run.last_value = event.step, event.value
            self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_LAST_STEP, run.last_step)
        elif event.type == "user_attr":
            if is_reserved(event.key):
                # A pod may write anything into its event file: our bookkeeping is not its to change.
                log.warning("trial %d: ignoring user attribute %r from its worker: the key is reserved", run.number, event.key)
                return
            self.storage.optuna.set_trial_user_attr(run.trial_id, event.key, event.value)
        elif event.type == "done":
            self._finish(run, TrialState.COMPLETE, event.value)
        elif event.type == "pruned":
            self._finish(run, TrialState.PRUNED, None)
        elif event.type == "error":
            self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_ERROR, event.message)
            log.warning("trial %d failed: %s", run.number, event.message)
            self._finish(run, TrialState.FAIL, None, error=event.message)
        elif event.type == "preempted":
            pass  # the worker goes away next; _attempt_ended launches the next attempt
        elif event.type == "interrupted":
            # No verdict on the trial: like a preemption, the next attempt resumes it (and it counts).
            run.interruption = event.cause
            self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_INTERRUPTION, f"attempt {run.attempt}: {event.cause}")
            log.warning("trial %d attempt %d interrupted: %s", run.number, run.attempt, event.cause)
        elif event.type == "stopped":
            # An ordered stop (budget): the trial stays RUNNING, resumable by a later run.
            self._park(run)

    def _park(self, run: TrialRun) -> None:
        """Leave a stopped trial RUNNING for a later run to resume (its worker is gone or going)."""
        del self.runs[run.number]
        run.finished = True
        self._write_cost_attrs(run.number, run.trial_id)
        self.progress.message(f"trial {run.number} stopped at step {run.last_step}; a later run resumes it")

    def _drain_pruned(
        self, live: Mapping[AttemptRef, WorkerHandle] | None, sizes: dict[str, int | None] | None = None
    ) -> None:
        """Read pruned attempts' final events (their CPU time) until they come or the worker is gone."""
        for ref, tail in list(self._draining.items()):
            self._last_words(ref, tail.poll(None if sizes is None else sizes.get(tail.key)))
            if ref in self._draining and live is not None and ref not in live:
                del self._draining[ref]  # gone without last words (SIGKILL): nothing more will come

    def _last_words(self, ref: AttemptRef, events: list[Event]) -> None:
        """Events after a trial's verdict: only the attempt's CPU time still matters (for the cost records)."""
        for event in events:
            if isinstance(event, FinalEvent):
                if event.cpu_seconds is not None and self.meter.add_cpu_seconds(ref, event.cpu_seconds):
                    self._cost_dirty.add(ref.trial)
                self._draining.pop(ref, None)
                return

    def _add_cpu_seconds(self, run: TrialRun, seconds: float) -> None:
        """Sum the CPU time of the trial's attempts (a worker killed after its verdict reports none)."""
        trial = self.storage.optuna.get_trial(run.trial_id)
        if trial.state.is_finished():
            return
        before = float_attr(trial.user_attrs, ATTR_CPU_SECONDS)
        self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_CPU_SECONDS, round(before + seconds, 3))

    def _prune(self, run: TrialRun, step: int) -> None:
        # Tell first and flush, then act: a crash in between leaves a journal
        # that says "pruned", and the next controller only has to clean up.
        self._finish(run, TrialState.PRUNED, None)
        # What the decision saw: the attempt's event file up to this byte (a worker writes on meanwhile).
        order = {"action": "prune", "step": step, "attempt": run.attempt, "events_read": run.tail.offset}
        self.volume.write_json(self.layout.control(run.number), order)
        if run.handle is not None:
            self.backend.terminate(run.handle)
            self._cost_dirty.update([run.number] if self.meter.ended(run.ref, self.wall_clock()) else [])
        self._draining[run.ref] = run.tail  # its last words (CPU time) may still come

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
            self.progress.message(f"{self.config.name}: {self.launch_stopped}; no more trials will be launched")

    def _finish(self, run: TrialRun, state: TrialState, value: float | None, error: str | None = None) -> None:
        assert self.study is not None
        self._count_failure(state, error)
        # Optuna takes a pruned trial's value from its last report; skip_if_finished covers a
        # trial a previous controller told just before it crashed.
        values = [value] if state == TrialState.COMPLETE else None
        # A told trial's attributes are frozen: its cost as of now goes in first (the records,
        # which stay writable, follow the worker to its end and the bill).
        if not self.storage.optuna.get_trial(run.trial_id).state.is_finished():
            self._write_cost_attrs(run.number, run.trial_id)
        self.study.tell(run.number, state=state, values=values, skip_if_finished=True)
        self.storage.flush()
        run.finished = True
        del self.runs[run.number]
        name = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}[state]
        self._refresh_tally()
        self.progress.trial_finished(self.tally, run.number, name, value if value is not None else run.last_value, run.last_step)

    def _attempt_ended(self, run: TrialRun) -> None:
        """The current attempt's worker is gone and said nothing final: try again, or give up."""
        assert self.study is not None
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
            self._finish(run, TrialState.FAIL, None, error="no attempts left")
            return
        self.progress.message(
            f"trial {run.number}: attempt {run.attempt} ended without a result ({how}); resuming as attempt {run.attempt + 1}"
        )
        self._start_attempt(run, run.attempt + 1)

    # -- launching ----------------------------------------------------------------------

    def _trials_left(self) -> int:
        assert self.study is not None
        made = len(self.study.get_trials(deepcopy=False))
        return max(0, self.config.budget.trials - made)

    def _launch_new_trials(self) -> None:
        assert self.study is not None
        if self.launch_stopped:
            return  # no trial is asked that could not run
        while len(self.runs) < self.config.budget.concurrency and self._trials_left() > 0:
            if self.config.sampler.seed is not None:
                # A seeded stream per trial number: a resumed run never re-proposes the first run's params.
                self.study.sampler = self.config.sampler.build(trial_number=len(self.study.get_trials(deepcopy=False)))
            trial = self.study.ask(self.config.distributions())
            self._write_spec(trial.number, trial.params)
            run = TrialRun(trial.number, trial._trial_id, 0, EventTail(self.volume, self.layout.events(trial.number, 0)))
            self.runs[trial.number] = run
            self._start_attempt(run, 0)

    def _write_spec(self, number: int, params: dict[str, object]) -> None:
        spec = TrialSpec(
            study=self.config.name,
            trial=number,
            objective=self.config.objective,
            params=dict(params),
            search_space={name: param.model_dump(mode="json") for name, param in self.config.search_space.items()},
            max_step=self.config.fidelity.max_step,
            eval_interval=self.config.fidelity.eval_interval,
            step_unit=self.config.fidelity.step_unit,
            direction=self.config.direction,
            code=self.code_sha,
        )
        spec.write(self.volume, self.layout.spec(number))

    def _start_attempt(self, run: TrialRun, attempt: int) -> None:
        assert self.study is not None
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
        refusal = self._budget_refusal()
        if refusal is not None:
            self.launch_stopped = refusal
            self.progress.message(f"{self.config.name}: {refusal}; no more workers will be launched")
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
            self.progress.message(f"trial {run.number}: launch of attempt {run.attempt} unconfirmed ({exc}); checking")
            return
        except ApiUnavailableError as exc:
            self._queue(run, f"{self._provider} API unreachable ({exc})")
            return
        except BalanceError as exc:
            self.launch_stopped = str(exc)
            self.progress.message(f"{self.config.name}: {exc}; no more pods will be launched")
            self._queue(run, str(exc))
            return
        now = self.wall_clock()
        billing = run.handle.billing
        run.started_at = billing.started_at if billing is not None and billing.started_at is not None else now
        if self.meter.observe(run.ref, run.handle, now):
            self._cost_dirty.add(run.number)
        if run.queued_until is not None:
            run.queued_until, run.queue_tries = None, 0
            self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_QUEUED, False)

    def _queue(self, run: TrialRun, reason: str) -> None:
        if run.queued_until is None:
            self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_QUEUED, True)
            # Readers (`hpo status`) learn it now, not after the rest of the cycle (cost records, ...).
            self.storage.flush()
            self.progress.message(f"trial {run.number} queued: {reason}")
        delay = min(MAX_QUEUE_DELAY, max(1.0, self.config.poll_interval) * 2**run.queue_tries)
        run.queue_tries += 1
        run.queued_until = self.clock() + delay

    # -- recovery after a controller crash ---------------------------------------------------

    def _recover(self) -> None:
        """Adopt the study's running trials and their live workers; terminate strays."""
        assert self.study is not None
        live = self._wait_for_listing()
        now = self.wall_clock()
        # Attempts a previous controller metered whose workers are gone ended unseen: at their last sighting.
        self._cost_dirty |= self.meter.close_unseen(now, live)
        self._cost_dirty |= self.meter.sweep(live, now)
        self._last_look = now
        self._reconcile()
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self._adopt(frozen, live)
        owned = {run.ref for run in self.runs.values()}
        for ref, handle in live.items():
            if ref not in owned:
                log.info("terminating stray worker %s (%s): no running trial owns it", handle.id, ref)
                self.progress.message(f"terminating stray worker of {ref}")
                self.backend.terminate(handle)
        if self.runs:
            self.progress.message(f"adopted {len(self.runs)} running trial(s): {', '.join(str(n) for n in sorted(self.runs))}")

    def _adopt(self, frozen: FrozenTrial, live: dict[AttemptRef, WorkerHandle]) -> None:
        attempts = int_attr(frozen.user_attrs, ATTR_ATTEMPTS)
        number = frozen.number
        run = TrialRun(number, frozen._trial_id, max(attempts - 1, 0), EventTail(self.volume, self.layout.events(number, 0)))
        run.reported = set(frozen.intermediate_values)
        if run.reported:
            run.last_step = max(run.reported)
            run.last_value = frozen.intermediate_values[run.last_step]
        self.runs[number] = run
        if not self._spec_is_ours(number, frozen.params):
            self._write_spec(number, frozen.params)
        control = self._read_control(number)
        if control == "stop":
            self.volume.delete(self.layout.control(number))  # this run decides anew whether it may go on
        if control == "prune":
            handle = live.get(run.ref)
            run.handle = handle
            self._finish(run, TrialState.PRUNED, None)
            if handle is not None:
                self.backend.terminate(handle)
            return
        if attempts == 0:
            self._start_attempt(run, 0)  # asked, but the crash came before its first launch
            return
        # Earlier attempts are over: replay their reports in order, so the first value per step
        # wins; a verdict one of them wrote (a crash before it was told) is the trial's result.
        for attempt in range(run.attempt):
            for event in drain(self.volume, self.layout.events(number, attempt)):
                if event.type in ("report", "user_attr", "done", "pruned", "error"):
                    self._apply(run, event)
                    if run.finished:
                        return
        run.tail = EventTail(self.volume, self.layout.events(number, run.attempt))
        run.handle = live.get(run.ref)
        if control == "stop" and run.handle is None:
            self._resume_stopped(run, frozen)
            return
        if run.handle is None and frozen.user_attrs.get(ATTR_QUEUED) and not self.volume.exists(run.tail.key):
            run.queued_until = self.clock()  # it was waiting for capacity: launch it again, same attempt

    def _spec_is_ours(self, number: int, params: dict[str, object]) -> bool:
        """True if the trial's spec on the volume is valid and says what the study says (anyone may write the volume)."""
        try:
            spec = TrialSpec.read(self.volume, self.layout.spec(number))
        except VolumeNotFoundError:
            return False
        except HpoError as exc:
            log.warning("study %s: rewriting the spec of trial %d: %s", self.config.name, number, exc)
            return False
        if spec.study != self.config.name or spec.trial != number or spec.params != dict(params):
            log.warning("study %s: rewriting the spec of trial %d: it does not match the study", self.config.name, number)
            return False
        return True

    def _resume_stopped(self, run: TrialRun, frozen: FrozenTrial) -> None:
        """A trial an earlier run stopped for its budget: keep what its attempt did, then start the next one.

        The stopped attempt may have ended on its own first (``done``), which
        then stands; otherwise its reports count and a new attempt resumes
        from the checkpoint, without using up one of the trial's attempts.
        """
        for event in drain(self.volume, run.tail.key):
            if event.type in ("report", "user_attr", "done", "pruned", "error"):
                self._apply(run, event)
                if run.finished:
                    return
        stops = int_attr(frozen.user_attrs, ATTR_BUDGET_STOPS) + 1
        self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_BUDGET_STOPS, stops)
        self.progress.message(f"trial {run.number}: resuming after a budget stop, as attempt {run.attempt + 1}")
        self._start_attempt(run, run.attempt + 1)

    def _read_control(self, number: int) -> str | None:
        """The order ``control.json`` holds for trial ``number``; junk there is one warning and no order."""
        return read_control_order(self.volume, self.layout.control(number))

    # -- cost and budget ------------------------------------------------------------------

    def _load_costs(self) -> None:
        """Take over the attempt records earlier runs left in the study."""
        assert self.study is not None
        for trial, bills in load_bills(self.storage.optuna.get_study_system_attrs(self.study._study_id)).items():
            self.meter.load(trial, bills)

    def _spend(self, now: float) -> Spend:
        rate, gpus = self.meter.billing_rate()
        return Spend(self.meter.spent_usd(now), self.meter.spent_gpu_seconds(now), rate, gpus)

    def _book(self, live: dict[AttemptRef, WorkerHandle] | None) -> None:
        """Meter this poll's listing, and stop the study if its spend reaches the budget before the next poll.

        Without a listing (an outage) the open bills run on, and a budget stop
        still orders every trial to stop through its control file.
        """
        now = self.wall_clock()
        if live is None:
            if self.guard.limited and not self.budget_stopped:
                reason = self.guard.exhausted(self._spend(now), self._horizon)
                if reason is not None:
                    self._stop_for_budget(reason, {}, now)
            return
        self._cost_dirty |= self.meter.sweep(live, now, extras=self.backend.extras())
        if self._last_look is not None:
            # A poll that came late (a slow API, a slow volume) says the next may too.
            self._horizon = max(self.config.poll_interval, now - self._last_look)
        self._last_look = now
        if not self.guard.limited or self.budget_stopped:
            return
        reason = self.guard.exhausted(self._spend(now), self._horizon)
        if reason is not None:
            self._stop_for_budget(reason, live, now)

    def _budget_refusal(self) -> str | None:
        """Why no worker may start now for the budget's sake, or None."""
        if not self.guard.limited:
            return None
        rate = self.backend.launch_rate()
        return self.guard.refuses_launch(self._spend(self.wall_clock()), self._horizon, rate.usd_per_hr, rate.gpu_count)

    def _stop_for_budget(self, reason: str, live: dict[AttemptRef, WorkerHandle], now: float) -> None:
        """Stop launching, order every running trial to stop and terminate every worker of the study."""
        self.budget_stopped = True
        self.launch_stopped = reason
        running = [run for run in self.runs.values() if run.queued_until is None]
        self.progress.message(
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
            if self.meter.ended(ref, now):
                self._cost_dirty.add(ref.trial)

    def _write_cost_attrs(self, number: int, trial_id: int) -> None:
        """Mirror a trial's cost totals into its user attributes (shown by the dashboard), when they changed."""
        cost = self.meter.trial_cost(number, self.wall_clock())
        values = (round(cost.usd, 6), round(cost.gpu_seconds, 1), cost.gpu_type)
        if self._attrs_written.get(number) == values or not self.meter.bills(number):
            return
        storage = self.storage.optuna
        storage.set_trial_user_attr(trial_id, ATTR_COST_USD, values[0])
        storage.set_trial_user_attr(trial_id, ATTR_GPU_SECONDS, values[1])
        if values[2]:
            storage.set_trial_user_attr(trial_id, ATTR_GPU_TYPE, values[2])
        self._attrs_written[number] = values

    def _save_costs(self, force: bool = False) -> None:
        """Save changed attempt records; every :data:`COST_SAVE_INTERVAL`, running ones and their trials' attributes."""
        assert self.study is not None
        due = force or self.clock() - self._cost_saved_at >= COST_SAVE_INTERVAL
        if due:
            self._cost_saved_at = self.clock()
            self._cost_dirty |= {trial for trial in self.meter.trials() if any(b.end is None for b in self.meter.bills(trial))}
            for run in self.runs.values():
                self._write_cost_attrs(run.number, run.trial_id)
        for trial in sorted(self._cost_dirty):
            save_bills(self.storage.optuna, self.study._study_id, trial, self.meter.bills(trial))
        self._cost_dirty.clear()

    def _save_costs_on_the_way_out(self) -> None:
        """Interrupted (Ctrl-C) or failed: keep what the meter knows, if the storage still takes it."""
        if self.study is None:
            return
        try:
            self._save_costs(force=True)
        except Exception as exc:  # noqa: BLE001  the original error matters more
            log.warning("study %s: could not save costs on the way out: %s", self.config.name, exc)

    def _reconcile(self) -> None:
        """Replace estimates with the provider's bill, for attempts that ended (recently or unconfirmed)."""
        now = self.wall_clock()
        pending = [
            bill
            for trial in self.meter.trials()
            for bill in self.meter.bills(trial)
            if bill.end is not None and bill.usd_per_hr > 0
            and now - bill.end < (BILL_HORIZON if bill.billed_usd is None else RECONCILE_WINDOW)
        ]
        if not pending:
            return
        try:
            billed = self.backend.billed_usd([b.worker for b in pending], min(b.start for b in pending))
        except HpoError as exc:
            log.warning("study %s: cannot read the bill (%s); costs stay estimates", self.config.name, exc)
            return
        self._cost_dirty |= self.meter.reconcile(billed)

    def _settle_costs(self) -> None:
        """The end of a run: one last look, the bill, every record and running trial's cost saved, the dashboard's plot."""
        assert self.study is not None
        try:
            live = self.backend.list_live()
            self._cost_dirty |= self.meter.sweep(live, self.wall_clock())
            self._drain_pruned(live)
            self._reconcile()
            self._save_costs(force=True)
            # The price list decides launches only under a budget; then say which one it was.
            prices = self.backend.prices() if self.guard.limited else None
            if prices is not None:
                self.storage.optuna.set_study_system_attr(self.study._study_id, PRICES_ATTR, prices.to_json())
        except HpoError as exc:
            log.warning("study %s: could not settle this run's costs: %s", self.config.name, exc)
        self._push_dashboard_plot()

    def _push_dashboard_plot(self) -> None:
        """Show the cost/loss front in optuna-dashboard (a study plot; the study itself stays single-objective)."""
        assert self.study is not None
        try:
            from hpo.report import dashboard_figure  # plotly and pandas: only at the end of a run

            figure = dashboard_figure(self.config, self.study, self.storage.optuna)
            if figure is None:
                return
            import optuna_dashboard  # type: ignore[import-untyped]

            optuna_dashboard.save_plotly_graph_object(self.study, figure, graph_object_id=DASHBOARD_PLOT_ID)
        except Exception as exc:  # noqa: BLE001  a plot must never fail a run
            log.warning("study %s: cannot update the dashboard's cost/loss plot: %s", self.config.name, exc)

    # -- the end of a run ---------------------------------------------------------------

    def _await_unowned_workers(self, timeout: float = 30.0, exit_grace: float = 5.0) -> None:
        """Wait (bounded) until no worker lives that no running trial owns: none outlives its trial.

        Finished workers exit by themselves and pruned ones were already told to;
        any still alive after ``exit_grace`` is terminated (the backend escalates).
        """
        owned = {run.ref for run in self.runs.values()}
        started = self.clock()
        while True:
            try:
                listing = self.backend.list_live()
            except ApiUnavailableError as exc:
                log.warning("study %s: cannot list workers at the end of the run (%s); they end themselves", self.config.name, exc)
                return
            unowned = [h for ref, h in listing.items() if ref not in owned]
            waited = self.clock() - started
            if not unowned:
                return
            if waited >= timeout:
                for handle in unowned:
                    log.warning("worker %s of %s still alive after %.0fs; `hpo cleanup` will stop it", handle.id, handle.ref, waited)
                return
            if waited >= exit_grace:
                for handle in unowned:
                    self.backend.terminate(handle)  # idempotent
            self.sleep(min(0.1, self.config.poll_interval))

    # -- reporting ----------------------------------------------------------------------

    def _refresh_tally(self) -> None:
        assert self.study is not None
        trials = self.study.get_trials(deepcopy=False)
        tally = self.tally
        tally.complete = sum(t.state == TrialState.COMPLETE for t in trials)
        tally.pruned = sum(t.state == TrialState.PRUNED for t in trials)
        tally.failed = sum(t.state == TrialState.FAIL for t in trials)
        tally.running = len(self.runs)
        best = self._best(trials)
        tally.best_value, tally.best_trial = (best.value, best.number) if best else (None, None)
        self.progress.update(tally)

    def _best(self, trials: list[FrozenTrial]) -> FrozenTrial | None:
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
        if not done:
            return None
        pick = min if self.config.direction == "minimize" else max
        return pick(done, key=lambda t: t.value)

    def _summary(self, seconds: float) -> RunSummary:
        assert self.study is not None
        trials = self.study.get_trials(deepcopy=False)
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
            stopped=self.launch_stopped,
            spent_usd=round(self.meter.spent_usd(self.wall_clock()), 6),
            gpu_hours=round(self.meter.spent_gpu_seconds(self.wall_clock()) / 3600.0, 6),
        )


def _duration(seconds: float) -> str:
    """``42s``, ``3m``, ``2h05m``: how long, at a glance."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
