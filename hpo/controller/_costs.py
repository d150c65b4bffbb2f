"""The controller's cost keeper: meter every worker, guard the budget, keep the cost records.

Each poll, :meth:`CostKeeper.book` meters what the listing shows (every
attempt's worker from its creation to the poll it was last seen in) and asks
the budget guard whether the spend, projected to the next poll, reaches
``budget.usd`` or ``budget.gpu_hours``; :meth:`CostKeeper.refusal` says
whether a launch would. Attempt records go to the study's system attributes
(changed ones each poll, running ones every :data:`COST_SAVE_INTERVAL`), and
each trial's totals to its user attributes, where optuna-dashboard shows
them. At the end of a run the provider's bill replaces the meter's estimates
(see :mod:`hpo.cost`).

A controller running on a pod of its own reports that pod's bill
(:meth:`CostKeeper.note_controller`); it counts in the spend and the budget
as warm workers' overhead does, with the records earlier runs' controller
pods left, and is saved with the overhead records.

The keeper decides nothing about trials: the controller acts on what it says.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping

import optuna

from hpo.backends import AttemptRef, Backend, WorkerHandle
from hpo.config import StudyConfig
from hpo.cost import (
    PRICES_ATTR,
    BudgetGuard,
    ControllerCost,
    CostMeter,
    Spend,
    WorkerOverhead,
    controller_usd,
    load_bills,
    load_controller_costs,
    load_overhead,
    save_bills,
    save_controller_cost,
    save_overhead,
)
from hpo.errors import HpoError
from hpo.events import Event, EventTail, FinalEvent
from hpo.journal import StudyStorage
from hpo.pool import WarmPool
from hpo.trial_attrs import ATTR_COST_USD, ATTR_CPU_SECONDS, ATTR_GPU_SECONDS, ATTR_GPU_TYPE, float_attr

log = logging.getLogger(__name__)

COST_SAVE_INTERVAL = 60.0  # seconds between saves of running attempts' cost (journal entries are not free)
RECONCILE_WINDOW = 86400.0  # seconds after an attempt ended during which its bill is read again (bills settle late)
BILL_HORIZON = 30 * 86400.0  # an attempt not on the bill after this long never will be (RunPod's default window)
DASHBOARD_PLOT_ID = "hpo-cost-vs-loss"  # the optuna-dashboard plot the controller keeps up to date


class CostKeeper:
    """What one study's workers cost, against its budget, kept in its journal.

    Args:
        config: The study (its budget and poll interval).
        storage: Its storage (opened as the writer).
        backend: Where its workers run (listings, launch rates, the bill).
        clock: Monotonic clock (when records are due).
        wall_clock: Epoch seconds on the provider's clock (workers' creation times are on it).
        dashboard_plot: Push the cost/loss plot to optuna-dashboard when a run settles.
    """

    def __init__(
        self,
        config: StudyConfig,
        storage: StudyStorage,
        backend: Backend,
        *,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        dashboard_plot: bool = True,
    ) -> None:
        self.config = config
        self.storage = storage
        self.backend = backend
        self.clock = clock
        self.wall_clock = wall_clock
        self.dashboard_plot = dashboard_plot
        self.meter = CostMeter()
        self.guard = BudgetGuard(config.budget.usd, config.budget.gpu_hours)
        self.stopped = False  # the budget was reached in this run
        self.study_id: int | None = None
        self._horizon = config.poll_interval  # seconds until the next look, as the guard projects it
        self._last_look: float | None = None  # wall time of the last poll's listing
        self._dirty: set[int] = set()  # trials whose attempt records changed since they were saved
        self._saved_at = -math.inf  # monotonic time of the last save of running attempts
        self._attrs_written: dict[int, tuple[float, float, str | None]] = {}
        # Attempts whose verdict came first, read on until their last words (their CPU time).
        self._draining: dict[AttemptRef, EventTail] = {}
        # Warm workers: what they billed outside attempts (see hpo.cost._overhead), by worker id.
        self._pool = backend if isinstance(backend, WarmPool) else None
        self._overhead: dict[str, WorkerOverhead] = {}  # as saved (earlier runs' workers included)
        # Controller pods (hpo.cost._controller), by pod id: what counts, and what the journal holds.
        self._controller: dict[str, ControllerCost] = {}
        self._controller_saved: dict[str, ControllerCost] = {}
        self._controller_noted: set[str] = set()  # pods noted in this run (the one this controller runs on)

    # -- the start of a run -------------------------------------------------------------

    def load(self, study: optuna.Study) -> None:
        """Take over the attempt records earlier runs left in the study."""
        self.study_id = study._study_id
        attrs = self.storage.optuna.get_study_system_attrs(self.study_id)
        for trial, bills in load_bills(attrs).items():
            self.meter.load(trial, bills)
        self._overhead = load_overhead(attrs)
        self._controller_saved = load_controller_costs(attrs)
        noted = [self._controller[pod] for pod in self._controller_noted]  # before load(): noted again
        self._controller = dict(self._controller_saved)
        for record in noted:
            self.note_controller(record)

    def recover(self, live: Mapping[AttemptRef, WorkerHandle]) -> None:
        """A new controller's first listing: close attempts whose workers ended unseen, read the bill."""
        now = self.wall_clock()
        # Attempts a previous controller metered whose workers are gone ended unseen: at their last sighting.
        self._dirty |= self.meter.close_unseen(now, dict(live))
        self._dirty |= self.meter.sweep(dict(live), now)
        self._last_look = now
        self.reconcile()

    # -- each poll ----------------------------------------------------------------------

    def note_controller(self, record: ControllerCost) -> None:
        """The controller's own pod's bill as it stands: counted from now on, saved at the next due :meth:`save`.

        The latest record of a pod replaces its earlier one, except that an
        estimate never replaces a record from the provider's bill.
        """
        known = self._controller.get(record.pod)
        self._controller_noted.add(record.pod)
        if known is not None and known.billed and not record.billed:
            return
        self._controller[record.pod] = record

    def book(self, live: Mapping[AttemptRef, WorkerHandle] | None) -> str | None:
        """Meter this poll's listing; the reason to stop the study, the first time its spend reaches the budget.

        Without a listing (an outage) the open bills run on, and the budget is
        still guarded.
        """
        now = self.wall_clock()
        if live is not None:
            self._dirty |= self.meter.sweep(dict(live), now, extras=self.backend.extras())
            if self._last_look is not None:
                # A poll that came late (a slow API, a slow volume) says the next may too.
                self._horizon = max(self.config.poll_interval, now - self._last_look)
            self._last_look = now
        if not self.guard.limited or self.stopped:
            return None
        reason = self.guard.exhausted(self._spend(now), self._horizon)
        self.stopped = reason is not None
        return reason

    def refusal(self) -> str | None:
        """Why no worker may start now for the budget's sake, or None."""
        if not self.guard.limited:
            return None
        rate = self.backend.launch_rate()
        return self.guard.refuses_launch(self._spend(self.wall_clock()), self._horizon, rate.usd_per_hr, rate.gpu_count)

    def launched(self, ref: AttemptRef, handle: WorkerHandle) -> None:
        """A worker was created for ``ref``: its bill opens."""
        if self.meter.observe(ref, handle, self.wall_clock()):
            self._dirty.add(ref.trial)

    def ended(self, ref: AttemptRef, now: float | None = None) -> None:
        """The worker of ``ref`` was terminated: its bill closes."""
        if self.meter.ended(ref, self.wall_clock() if now is None else now):
            self._dirty.add(ref.trial)

    def saw(self, ref: AttemptRef) -> bool:
        """True if a worker of ``ref`` was ever created or listed (its attempt has a record)."""
        return any(bill.attempt == ref.attempt for bill in self.meter.bills(ref.trial))

    def add_cpu_seconds(self, ref: AttemptRef, trial_id: int, seconds: float) -> None:
        """An attempt's CPU time: into its record, and summed into its trial's attribute while the trial runs."""
        if self.meter.add_cpu_seconds(ref, seconds):
            self._dirty.add(ref.trial)
        trial = self.storage.optuna.get_trial(trial_id)
        if trial.state.is_finished():
            return  # a worker killed after its verdict reports none; one that reports late counts in its record
        before = float_attr(trial.user_attrs, ATTR_CPU_SECONDS)
        self.storage.optuna.set_trial_user_attr(trial_id, ATTR_CPU_SECONDS, round(before + seconds, 3))

    # -- last words: an attempt's CPU time after its verdict ----------------------------------

    def follow(self, ref: AttemptRef, tail: EventTail) -> None:
        """Read on ``ref``'s events after its verdict, for its final event's CPU time."""
        self._draining[ref] = tail

    def following(self) -> list[str]:
        """The event files still read for their last words."""
        return [tail.key for tail in self._draining.values()]

    def last_words(self, ref: AttemptRef, events: Iterable[Event]) -> None:
        """Events after a trial's verdict: only the attempt's CPU time still matters."""
        for event in events:
            if isinstance(event, FinalEvent):
                if event.cpu_seconds is not None and self.meter.add_cpu_seconds(ref, event.cpu_seconds):
                    self._dirty.add(ref.trial)
                self._draining.pop(ref, None)
                return

    def drain(self, live: Mapping[AttemptRef, WorkerHandle] | None, sizes: Mapping[str, int | None] | None = None) -> None:
        """Read the followed attempts' last words until they come or the worker is gone."""
        for ref, tail in list(self._draining.items()):
            self.last_words(ref, tail.poll(None if sizes is None else sizes.get(tail.key)))
            if ref in self._draining and live is not None and ref not in live:
                del self._draining[ref]  # gone without last words (SIGKILL): nothing more will come

    # -- records ------------------------------------------------------------------------

    def write_trial_attrs(self, number: int, trial_id: int) -> None:
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

    def save(self, running: Mapping[int, int], force: bool = False) -> None:
        """Save changed attempt records; every :data:`COST_SAVE_INTERVAL`, running ones and their trials' totals.

        ``running`` maps each running trial's number to its trial id.
        """
        assert self.study_id is not None, "load() first"
        if force or self.clock() - self._saved_at >= COST_SAVE_INTERVAL:
            self._saved_at = self.clock()
            self._dirty |= {trial for trial in self.meter.trials() if any(b.end is None for b in self.meter.bills(trial))}
            for number, trial_id in running.items():
                self.write_trial_attrs(number, trial_id)
            self._save_overhead()
            self._save_controller()
        for trial in sorted(self._dirty):
            save_bills(self.storage.optuna, self.study_id, trial, self.meter.bills(trial))
        self._dirty.clear()

    def _save_overhead(self) -> None:
        """Warm workers' overhead records that changed since they were saved."""
        if self._pool is None:
            return
        assert self.study_id is not None
        for record in self._current_overhead().values():
            if self._overhead.get(record.worker) != record:
                save_overhead(self.storage.optuna, self.study_id, record)
                self._overhead[record.worker] = record

    def _save_controller(self) -> None:
        """Controller pods' records that changed since they were saved."""
        assert self.study_id is not None
        for pod, record in self._controller.items():
            if self._controller_saved.get(pod) != record:
                save_controller_cost(self.storage.optuna, self.study_id, record)
                self._controller_saved[pod] = record

    def _current_overhead(self) -> dict[str, WorkerOverhead]:
        """The pool's records as they stand, except that a billed record saved earlier beats an estimate.

        A worker that ended before this run (rebuilt from its log) has no bill
        read in this run until it settles; its saved record, from the bill,
        stays what counts.
        """
        assert self._pool is not None
        current = {}
        for record in self._pool.overhead_records():
            saved = self._overhead.get(record.worker)
            current[record.worker] = saved if saved is not None and saved.billed and not record.billed else record
        return current

    def save_on_the_way_out(self, running: Mapping[int, int]) -> None:
        """Interrupted (Ctrl-C) or failed: keep what the meter knows, if the storage still takes it."""
        if self.study_id is None:
            return
        try:
            self.save(running, force=True)
        except Exception as exc:  # noqa: BLE001  the original error matters more
            log.warning("study %s: could not save costs on the way out: %s", self.config.name, exc)

    def reconcile(self) -> None:
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
        self._dirty |= self.meter.reconcile(billed)

    # -- the end of a run ---------------------------------------------------------------

    def settle(self, study: optuna.Study, running: Mapping[int, int]) -> None:
        """One last look, the bill, every record and running trial's cost saved, the dashboard's plot."""
        try:
            live = self.backend.list_live()
            self._dirty |= self.meter.sweep(live, self.wall_clock())
            self.drain(live)
            self.reconcile()
            if self._pool is not None:
                self._pool.overhead_usd(refresh=True)  # the workers' own bills: what the attempts' shares leave
            self.save(running, force=True)
            # The price list decides launches only under a budget; then say which one it was.
            prices = self.backend.prices() if self.guard.limited else None
            if prices is not None:
                self.storage.optuna.set_study_system_attr(study._study_id, PRICES_ATTR, prices.to_json())
        except HpoError as exc:
            log.warning("study %s: could not settle this run's costs: %s", self.config.name, exc)
        if self.dashboard_plot:
            self._push_dashboard_plot(study)

    def _push_dashboard_plot(self, study: optuna.Study) -> None:
        """Show the cost/loss front in optuna-dashboard (a study plot; the study itself stays single-objective)."""
        try:
            from hpo.report import dashboard_figure  # plotly and pandas: only at the end of a run
        except ImportError as exc:  # a remote controller's pod runs the trial image, which has no plotting libraries
            log.info(
                "study %s: no cost/loss plot for the dashboard here (%s); `hpo report --study %s` draws it",
                self.config.name, exc, self.config.name,
            )
            return
        try:

            figure = dashboard_figure(self.config, study, self.storage.optuna)
            if figure is None:
                return
            import optuna_dashboard

            optuna_dashboard.save_plotly_graph_object(study, figure, graph_object_id=DASHBOARD_PLOT_ID)
        except Exception as exc:  # noqa: BLE001  a plot must never fail a run
            log.warning("study %s: cannot update the dashboard's cost/loss plot: %s", self.config.name, exc)

    def spent_usd(self) -> float:
        """The whole study's spend so far (all runs, warm workers' overhead and controller pods included), USD."""
        return round(self.meter.spent_usd(self.wall_clock()) + self._overhead_usd() + self.controller_usd(), 6)

    def controller_usd(self) -> float:
        """What the study's controller pods cost so far (this run's as last noted, earlier runs' as saved), USD."""
        return controller_usd(self._controller.values())

    def _controller_rate(self) -> float:
        """USD an hour the controller pods of this run bill now (a billed record is a pod that ended)."""
        return math.fsum(
            record.rate_per_hour
            for pod, record in self._controller.items()
            if pod in self._controller_noted and not record.billed
        )

    def _overhead_usd(self) -> float:
        """Earlier runs' workers as saved, plus this run's pool as it stands (its estimate until the bill comes)."""
        if self._pool is None:
            return math.fsum(record.usd for record in self._overhead.values())
        current = self._current_overhead()
        earlier = math.fsum(record.usd for worker, record in self._overhead.items() if worker not in current)
        return earlier + math.fsum(record.usd for record in current.values())

    def gpu_hours(self) -> float:
        """The whole study's GPU-hours so far (all runs)."""
        return round(self.meter.spent_gpu_seconds(self.wall_clock()) / 3600.0, 6)

    def _spend(self, now: float) -> Spend:
        rate, gpus = self.meter.billing_rate()
        if self._pool is not None:  # idle warm workers bill too: the guard projects them
            idle_rate, idle_gpus = self._pool.idle_rate()
            rate, gpus = rate + idle_rate, gpus + idle_gpus
        rate += self._controller_rate()  # so does the controller's own pod (no GPU)
        usd = self.meter.spent_usd(now) + self._overhead_usd() + self.controller_usd()
        return Spend(usd, self.meter.spent_gpu_seconds(now), rate, gpus)
