"""The controller: ask -> write spec -> launch -> poll events -> report / prune -> tell.

It owns the study: it alone writes the journal, specs and control files (it
holds the study's lease), and it is the only party that talks to Optuna. It
runs one poll cycle at a time, in one thread:

1. renew the lease;
2. list every live worker of the study (one backend call);
3. read the new bytes of each running attempt's event file, report each new
   step to the study (the first value for a step wins) and ask the pruner;
   a prune writes ``control.json`` and terminates the worker in this cycle;
4. an attempt whose worker is gone without a final event was preempted (or
   killed): the trial's next attempt resumes from its checkpoint, up to
   ``budget.max_attempts``;
5. launch new trials up to ``budget.concurrency`` and ``budget.trials``;
6. flush the journal to the volume.

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
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.backends import AttemptRef, Backend, WorkerHandle
from hpo.config import StudyConfig
from hpo.controller._progress import ProgressSink, StudyTally
from hpo.errors import BalanceError, CapacityError, HpoError
from hpo.events import Event, EventTail, FinalEvent, drain
from hpo.journal import StudyStorage
from hpo.layout import StudyLayout
from hpo.lease import Lease
from hpo.spec import TrialSpec
from hpo.volume import Volume

log = logging.getLogger(__name__)

# Trial user attributes the controller maintains (visible in the dashboard).
ATTR_ATTEMPTS = "attempts"  # attempts launched so far; the current one is attempts - 1
ATTR_PREEMPTIONS = "preemptions"
ATTR_ERROR = "error"
ATTR_LAST_STEP = "last_step"
ATTR_CPU_SECONDS = "cpu_seconds"  # CPU time the trial's processes used (local backend)
ATTR_QUEUED = "queued"  # True while the current attempt waits for capacity

MAX_QUEUE_DELAY = 300.0  # seconds between launch tries for a trial no GPU type has room for


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
    stopped: str | None = None  # why the run ended before the study did (balance out)


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
        self.launch_stopped: str | None = None  # why no more launches (balance out), once it happens

    # -- the run ------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Run poll cycles until the study's trial budget is spent and nothing runs."""
        started = self.clock()
        self.lease.acquire()
        try:
            self.study = optuna.create_study(
                study_name=self.config.name,
                storage=self.storage.optuna,
                sampler=self.config.sampler.build(),
                pruner=self.config.build_pruner(),
                direction=self.config.direction,
                load_if_exists=True,
            )
            self.storage.flush()
            self._recover()
            self.progress.start(self.tally)
            while True:
                self.cycle()
                if not self.runs and self._trials_left() == 0:
                    break
                if self.launch_stopped and all(run.queued_until is not None for run in self.runs.values()):
                    self.progress.message(
                        f"stopped launching: {self.launch_stopped}; {len(self.runs)} trial(s) left to resume "
                        f"with `hpo run --study {self.config.name}`"
                    )
                    break
                self.sleep(self.config.poll_interval)
            self._await_unowned_workers()
        finally:
            self.storage.flush()
            self.progress.stop(self.tally)
            self.backend.close()
            self.lease.release()
        return self._summary(self.clock() - started)

    def cycle(self) -> None:
        """One poll cycle (see the module docstring)."""
        self.lease.renew()
        live = self.backend.list_live()
        self.backend.reap_dead()
        sizes = self.volume.sizes([run.tail.key for run in self.runs.values()])
        for run in list(self.runs.values()):
            if run.queued_until is not None:
                if not self.launch_stopped and self.clock() >= run.queued_until:
                    self._launch(run)
                continue
            run.handle = live.get(run.ref)
            for event in run.tail.poll(sizes.get(run.tail.key)):
                self._apply(run, event)
                if run.finished:
                    break
            if not run.finished and run.handle is None:
                self._attempt_ended(run)
        self._launch_new_trials()
        self._refresh_tally()
        self.storage.flush()

    # -- events -------------------------------------------------------------------------

    def _apply(self, run: TrialRun, event: Event) -> None:
        assert self.study is not None
        if isinstance(event, FinalEvent) and event.cpu_seconds is not None:
            self._add_cpu_seconds(run, event.cpu_seconds)
        if event.type == "report":
            if event.step in run.reported:
                return  # a resumed attempt repeating a step: the first value stands
            trial = optuna.Trial(self.study, run.trial_id)
            trial.report(event.value, event.step)
            run.reported.add(event.step)
            run.last_step, run.last_value = event.step, event.value
            self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_LAST_STEP, event.step)
            if trial.should_prune():
                self._prune(run, event.step)
        elif event.type == "user_attr":
            self.storage.optuna.set_trial_user_attr(run.trial_id, event.key, event.value)
        elif event.type == "done":
            self._finish(run, TrialState.COMPLETE, event.value)
        elif event.type == "pruned":
            self._finish(run, TrialState.PRUNED, None)
        elif event.type == "error":
            self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_ERROR, event.message)
            log.warning("trial %d failed: %s", run.number, event.message)
            self._finish(run, TrialState.FAIL, None)
        elif event.type == "preempted":
            pass  # the worker goes away next; _attempt_ended launches the next attempt
        elif event.type == "stopped":
            # An ordered stop (budget): the trial stays RUNNING, resumable by a later run.
            del self.runs[run.number]
            run.finished = True
            self.progress.message(f"trial {run.number} stopped at step {run.last_step}; a later run resumes it")

    def _add_cpu_seconds(self, run: TrialRun, seconds: float) -> None:
        """Sum the CPU time of the trial's attempts (a worker killed after its verdict reports none)."""
        trial = self.storage.optuna.get_trial(run.trial_id)
        if trial.state.is_finished():
            return
        before = float(trial.user_attrs.get(ATTR_CPU_SECONDS, 0.0))
        self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_CPU_SECONDS, round(before + seconds, 3))

    def _prune(self, run: TrialRun, step: int) -> None:
        # Tell first and flush, then act: a crash in between leaves a journal
        # that says "pruned", and the next controller only has to clean up.
        self._finish(run, TrialState.PRUNED, None)
        self.volume.write_json(self.layout.control(run.number), {"action": "prune", "step": step})
        if run.handle is not None:
            self.backend.terminate(run.handle)

    def _finish(self, run: TrialRun, state: TrialState, value: float | None) -> None:
        assert self.study is not None
        # Optuna takes a pruned trial's value from its last report; skip_if_finished covers a
        # trial a previous controller told just before it crashed.
        values = [value] if state == TrialState.COMPLETE else None
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
        preemptions = int(storage.get_trial(run.trial_id).user_attrs.get(ATTR_PREEMPTIONS, 0)) + 1
        storage.set_trial_user_attr(run.trial_id, ATTR_PREEMPTIONS, preemptions)
        if run.attempt + 1 >= max_attempts:
            reason = (
                f"attempt {run.attempt} ended without a result (preempted or killed); "
                f"no attempts left (budget.max_attempts = {max_attempts})"
            )
            storage.set_trial_user_attr(run.trial_id, ATTR_ERROR, reason)
            log.warning("trial %d: %s", run.number, reason)
            self._finish(run, TrialState.FAIL, None)
            return
        self.progress.message(f"trial {run.number}: attempt {run.attempt} ended without a result; resuming as attempt {run.attempt + 1}")
        self._start_attempt(run, run.attempt + 1)

    # -- launching ----------------------------------------------------------------------

    def _trials_left(self) -> int:
        assert self.study is not None
        made = len(self.study.get_trials(deepcopy=False))
        return max(0, self.config.budget.trials - made)

    def _launch_new_trials(self) -> None:
        assert self.study is not None
        while len(self.runs) < self.config.budget.concurrency and self._trials_left() > 0:
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
        self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_ATTEMPTS, attempt + 1)
        self.storage.flush()  # the journal names the attempt before it exists in the world
        self._launch(run)

    def _launch(self, run: TrialRun) -> None:
        """Start the run's current attempt; with no capacity anywhere, queue it and try later."""
        if self.launch_stopped:
            self._queue(run, self.launch_stopped)
            return
        try:
            run.handle = self.backend.launch(run.ref)
        except CapacityError as exc:
            self._queue(run, str(exc))
            return
        except BalanceError as exc:
            self.launch_stopped = str(exc)
            self.progress.message(f"{self.config.name}: {exc}; no more pods will be launched")
            self._queue(run, str(exc))
            return
        if run.queued_until is not None:
            run.queued_until, run.queue_tries = None, 0
            self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_QUEUED, False)

    def _queue(self, run: TrialRun, reason: str) -> None:
        if run.queued_until is None:
            self.storage.optuna.set_trial_user_attr(run.trial_id, ATTR_QUEUED, True)
            self.progress.message(f"trial {run.number} queued: {reason}")
        delay = min(MAX_QUEUE_DELAY, max(1.0, self.config.poll_interval) * 2**run.queue_tries)
        run.queue_tries += 1
        run.queued_until = self.clock() + delay

    # -- recovery after a controller crash ---------------------------------------------------

    def _recover(self) -> None:
        """Adopt the study's running trials and their live workers; terminate strays."""
        assert self.study is not None
        live = self.backend.list_live()
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
        attempts = int(frozen.user_attrs.get(ATTR_ATTEMPTS, 0))
        number = frozen.number
        run = TrialRun(number, frozen._trial_id, max(attempts - 1, 0), EventTail(self.volume, self.layout.events(number, 0)))
        run.reported = set(frozen.intermediate_values)
        if run.reported:
            run.last_step = max(run.reported)
            run.last_value = frozen.intermediate_values[run.last_step]
        self.runs[number] = run
        if not self.volume.exists(self.layout.spec(number)):
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
        # Earlier attempts are over: replay their reports in order, so the first value per step wins.
        for attempt in range(run.attempt):
            for event in drain(self.volume, self.layout.events(number, attempt)):
                if event.type in ("report", "user_attr"):
                    self._apply(run, event)
                    if run.finished:
                        return
        run.tail = EventTail(self.volume, self.layout.events(number, run.attempt))
        run.handle = live.get(run.ref)
        if run.handle is None and frozen.user_attrs.get(ATTR_QUEUED) and not self.volume.exists(run.tail.key):
            run.queued_until = self.clock()  # it was waiting for capacity: launch it again, same attempt

    def _read_control(self, number: int) -> str | None:
        try:
            return self.volume.read_json(self.layout.control(number)).get("action")
        except (HpoError, AttributeError):
            return None

    # -- the end of a run ---------------------------------------------------------------

    def _await_unowned_workers(self, timeout: float = 30.0, exit_grace: float = 5.0) -> None:
        """Wait (bounded) until no worker lives that no running trial owns: none outlives its trial.

        Finished workers exit by themselves and pruned ones were already told to;
        any still alive after ``exit_grace`` is terminated (the backend escalates).
        """
        owned = {run.ref for run in self.runs.values()}
        started = self.clock()
        while True:
            unowned = [h for ref, h in self.backend.list_live().items() if ref not in owned]
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
        )
