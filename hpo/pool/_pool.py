"""The warm pool: long-lived workers behind the attempt-speaking :class:`~hpo.backends.Backend` interface.

The controller keeps speaking attempts (launch one, list the live ones,
terminate one); :class:`WarmPool` turns that into assignments to a few
long-lived workers of an inner backend (local processes, pods), per the
protocol of :mod:`hpo.pool._protocol`:

* **launch**: an idle worker gets the attempt (a ``run`` assignment); else,
  while fewer than ``max_workers`` live, a new worker is launched with its
  first assignment already written (seq 1, so it has work the moment it
  boots); else the attempt waits in the pool's queue (listed as
  ``starting``) and goes to the first worker that frees up.
* **list_live**: one listing of the inner backend's workers, one
  :meth:`~hpo.volume.Volume.sizes` of their logs, and a read of the grown
  logs only. An attempt is listed while its worker lives and has not logged
  its ``EndEntry``; the controller then reads the attempt's final event (the
  worker logs the end only after the attempt's process exited) or counts it
  lost. The first listing adopts what an earlier controller left running,
  from each worker's ``assignment.json`` and log.
* **terminate**: a ``stop`` assignment; the worker stays. If the attempt has
  not ended ``kill_grace + 2 * worker_poll`` seconds later the worker is hung
  and is terminated itself (the attempt then leaves the listing, lost), unless
  it never logged a word (still provisioning: it reads the ``stop`` first and
  never runs the attempt, so it stays and the attempt is over).
* **idle workers** get an ``exit`` assignment and are terminated after
  ``idle_limit`` seconds without an attempt, at once when there are more than
  ``max_workers``; :meth:`WarmPool.retire_all` ends all of them.
* **duplicates** (two live workers with one index, which read the same
  assignment and would run the same attempt) are terminated at sight, the
  younger ones, as are workers the pool never launched or already retired;
  their bills are overhead.
* **costs** (see :mod:`hpo.pool._ledger`): each attempt's handle bills at its
  worker's rate; :meth:`WarmPool.billed_usd` splits each worker's bill across
  the attempts it ran, and :meth:`WarmPool.overhead_usd` is the rest, to the cent.

What a worker writes never decides what the pool assigns or terminates: its
log only says when the attempt the pool assigned to it started and ended.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable

from pydantic import ValidationError

from hpo.backends import AttemptRef, Backend, Billing, LaunchRate, WorkerHandle
from hpo.cost import PriceBook, WorkerOverhead
from hpo.errors import BackendError, HpoError, LaunchUnknownError
from hpo.jobs import JobRequest, JobWorker
from hpo.layout import StudyLayout
from hpo.pool._ledger import Share, WorkerLedger
from hpo.pool._protocol import (
    ASSIGNMENT_POLL_SECONDS,
    WORKER_IDLE_ENV,
    WORKER_POLL_ENV,
    Assignment,
    BootEntry,
    EndEntry,
    ExitEntry,
    StartEntry,
    WorkerRecord,
    assignment_key,
    parse_worker_index,
    worker_log_key,
    worker_record_key,
    workers_dir,
)
from hpo.pool._state import Attempt, WorkerState, clamp, read_assignment, rebuild
from hpo.pool._tail import LogEntry, LogTail
from hpo.records import LaunchRecord
from hpo.volume import Volume
from hpo.workers import PoolWorker

log = logging.getLogger(__name__)

#: The longest wait between two launches of a worker for a queued attempt after failed ones (seconds).
MAX_RETRY_DELAY = 300.0
#: Keys of a worker's ``detail`` copied into an attempt's launch record (those :class:`LaunchRecord` knows).
_RECORD_KEYS = ("pid", "create_time", "host", "pod_id", "pod_name", "gpu_type", "spot", "cost_per_hr", "bid_per_gpu")


class WarmPool(Backend):
    """Attempts on warm workers of ``inner`` (a backend that supports workers).

    Args:
        inner: The backend whose workers run the attempts (``launch_worker``, ``list_workers``, ...).
        volume: The study's volume (assignments, worker logs, launch records).
        study: The study's name.
        max_workers: The most workers that run at once (the study's concurrency).
        idle_limit: Seconds a worker may run nothing before it is retired.
        worker_poll: Seconds between a worker's reads of its assignment (also sent to it).
        kill_grace: Seconds a worker takes to stop an attempt (SIGTERM, then SIGKILL) before it counts as hung.
        clock: Monotonic clock (idle limits, kill deadlines).
        wall_clock: Epoch seconds on the provider's clock (shares of the bill, handles' billing).
        passive: Only look (``hpo status``, ``hpo cleanup``): list the attempts workers run, but
            assign, retire or terminate nothing on its own; :meth:`terminate` still writes a ``stop``.
    """

    def __init__(
        self,
        inner: Backend,
        volume: Volume,
        study: str,
        *,
        max_workers: int,
        idle_limit: float = 120.0,
        worker_poll: float = ASSIGNMENT_POLL_SECONDS,
        kill_grace: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        passive: bool = False,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, not {max_workers}")
        if not inner.supports_workers:
            raise BackendError(f"the {inner.name} backend cannot run warm workers")
        self.name = inner.name
        self.inner = inner
        self.volume = volume
        self.study = study
        self.max_workers = max_workers
        self.idle_limit = idle_limit
        self.worker_poll = worker_poll
        self.kill_grace = kill_grace
        self.clock = clock
        self.wall_clock = wall_clock
        self._layout = StudyLayout(study)
        self._workers: dict[int, WorkerState] = {}
        self._queue: list[AttemptRef] = []  # attempts waiting for a worker, oldest first
        self._unconfirmed: dict[int, tuple[AttemptRef, float, bool]] = {}  # index -> (attempt, launched at, from queue)
        self._ledgers: dict[str, WorkerLedger] = {}  # by worker id; kept after the worker is gone
        self._share_ledger: dict[str, WorkerLedger] = {}  # attempt handle id -> its worker's ledger
        self._bills: dict[str, float] = {}  # worker id -> the last bill read
        self._terminated: set[str] = set()  # worker ids the pool terminated (never again)
        self._next_index = 0
        self._adopted = False
        self._last_look: float | None = None  # wall time of the previous listing
        self._failures = 0  # launches from the queue that failed in a row
        self._retry_at = -math.inf  # pool clock: no launch from the queue before then
        self.passive = passive
        # One-attempt workers the inner backend lists (a run with `reuse: false` before, a stray named
        # like an attempt): the controller adopts or ends them like any attempt's worker.
        self._direct: dict[AttemptRef, WorkerHandle] = {}
        self._recorded: set[int] = set()  # worker indices whose worker.json this pool wrote or read

    # -- the attempt interface --------------------------------------------------------------

    def launch(self, ref: AttemptRef) -> WorkerHandle:
        """Give ``ref`` to an idle worker, else to a new one, else queue it (see the module docstring)."""
        self._ensure_adopted()
        known = self._handle_of(ref)
        if known is not None:
            return known
        idle = self._idle_worker()
        if idle is not None:
            return self._handle(idle, self._assign(idle, ref))
        if self._active() < self.max_workers:
            state = self._launch_new(ref, queued=False)
            assert state is not None and state.current is not None  # a direct launch raises instead
            return self._handle(state, state.current)
        self._queue.append(ref)
        return _queued_handle(ref)

    def list_live(self) -> dict[AttemptRef, WorkerHandle]:
        """Every attempt assigned to a live worker and not ended, every queued one (``starting``), and
        every one-attempt worker the inner backend runs (see ``_direct``)."""
        now_wall = self.wall_clock()
        self._direct = self.inner.list_live()  # the same provider listing as the workers' (one GET on RunPod)
        listed = self.inner.list_workers()
        if not self._adopted:
            self._adopt(listed, now_wall)
        else:
            self._track(listed, now_wall)
        if not self.passive:
            self._settle_duplicates(self.inner.worker_extras(), now_wall)
        states = list(self._workers.values())
        sizes = self.volume.sizes([state.tail.key for state in states])
        low = self._last_look if self._last_look is not None else -math.inf
        for state, entries in zip(states, LogTail.poll_many_entries([s.tail for s in states], sizes), strict=True):
            self._apply(state, entries, low, now_wall)
        if not self.passive:
            self._kill_hung(now_wall)
            self._serve_queue()
            self._retire_idle(now_wall)
        self._last_look = now_wall
        live = dict(self._direct)
        live.update(self._live())  # an attempt both assigned and run directly: the pool's is the one that counts
        return live

    def terminate(self, handle: WorkerHandle) -> None:
        """Write a ``stop`` for the attempt (once); the worker is terminated only if it hangs past the grace.

        A one-attempt worker of the inner backend (listed by :meth:`list_live`) is terminated by it.
        """
        direct = self._direct.get(handle.ref)
        if direct is not None and direct.id == handle.id:
            self.inner.terminate(handle)
            return
        ref = handle.ref
        if ref in self._queue:
            self._queue.remove(ref)
            return
        for index, (pending, _at, _queued) in list(self._unconfirmed.items()):
            if pending == ref:
                self._give_up(index, requeue=False)
                return
        state = self._state_of(ref)
        if state is None or state.current is None or state.current.stop_seq is not None:
            return
        attempt = state.current
        attempt.stop_seq = self._write(state, "stop", ref)
        attempt.kill_at = self.clock() + self.kill_grace + 2 * self.worker_poll

    def extras(self) -> list[WorkerHandle]:
        """The inner backend's duplicate one-attempt workers; duplicate warm workers the pool ends itself (overhead)."""
        return self.inner.extras()

    # -- the rest of the interface, delegated -----------------------------------------------

    def provider_now(self) -> float | None:
        return self.inner.provider_now()

    def reap_dead(self) -> list[WorkerHandle]:
        return self.inner.reap_dead()

    def launch_rate(self) -> LaunchRate:
        return self.inner.launch_rate()

    def prices(self) -> PriceBook | None:
        return self.inner.prices()

    def launch_job(self, request: JobRequest) -> JobWorker:
        return self.inner.launch_job(request)

    def list_jobs(self) -> list[JobWorker]:
        return self.inner.list_jobs()

    def terminate_job(self, worker: JobWorker) -> None:
        self.inner.terminate_job(worker)

    def close(self) -> None:
        """Retire every worker that runs nothing the controller still wants, then close the inner backend.

        At the end of a run nothing runs, so every worker ends. After a crash
        (an exception out of the run loop) a worker still running an attempt
        is left alive, as :meth:`Backend.close` promises: the next controller
        adopts it, or it ends itself once idle with no controller. One still
        stopping an attempt (its prune came last) is retired too: its
        attempt's verdict is told already.
        """
        try:
            if not self.passive:
                now_wall = self.wall_clock()
                for state in list(self._workers.values()):
                    if state.current is None or state.current.stop_seq is not None:
                        self._retire(state, now_wall)
        finally:
            self.inner.close()

    def wind_down(self) -> None:
        """Retire the idle workers now: nothing new will be asked (the controller says so), so they would only bill.

        A worker still stopping an attempt is left to finish: the attempt's
        own process writes its final event (``pruned``, ``stopped`` with its
        checkpoint) on the way out, and the worker is retired once it is idle.
        """
        now_wall = self.wall_clock()
        for state in list(self._workers.values()):
            if state.current is None:
                self._retire(state, now_wall)

    def retire_all(self) -> None:
        """The study is over: an ``exit`` to every worker and terminate it, busy or not; the queue is dropped."""
        self._queue.clear()
        for index in list(self._unconfirmed):
            self._give_up(index, requeue=False)
        now_wall = self.wall_clock()
        for state in list(self._workers.values()):
            self._retire(state, now_wall)

    # -- costs --------------------------------------------------------------------------------

    def billed_usd(self, worker_ids: list[str], since: float) -> dict[str, float]:
        """Each attempt's share of its worker's bill, by the attempt's handle id (``worker_ids`` are those ids).

        One call to the inner backend for the workers of those attempts, since
        the earliest of ``since`` and their creation (a share is only right
        against the worker's whole bill).
        """
        wanted = [i for i in worker_ids if i in self._share_ledger]
        direct = [i for i in worker_ids if i not in self._share_ledger and "/" not in i]  # one-attempt workers' own ids
        billed = self.inner.billed_usd(direct, since) if direct else {}
        ledgers = {self._share_ledger[i].id: self._share_ledger[i] for i in wanted}
        if not ledgers:
            return billed
        bills = self._read_bills(ledgers.values(), since)
        now = self.wall_clock()
        split = {
            share_id: usd
            for ledger in ledgers.values()
            if ledger.id in bills
            for share_id, usd in ledger.split(bills[ledger.id], now).shares.items()
        }
        return {**billed, **{i: split[i] for i in wanted if i in split}}

    def overhead_usd(self, refresh: bool = True) -> float:
        """USD the workers billed beyond their attempts' shares (provisioning, pull, idle, duplicates).

        From each worker's bill (read anew unless ``refresh`` is false) where
        the provider has one, else estimated at its rate. With
        :meth:`billed_usd` of every attempt it adds up to the workers' bills.
        """
        if refresh and self._ledgers:
            self._read_bills(self._ledgers.values(), None)
        now = self.wall_clock()
        return math.fsum(ledger.overhead_usd(now, self._bills.get(ledger.id)) for ledger in self._ledgers.values())

    def overhead_seconds(self) -> float:
        """Worker-seconds billed beyond the attempts' shares (from the last bills read, else the clock)."""
        now = self.wall_clock()
        return math.fsum(ledger.overhead_seconds(now, self._bills.get(ledger.id)) for ledger in self._ledgers.values())

    def overhead_estimate_usd(self) -> float:
        """What the workers cost so far that no attempt's handle bills for: the budget guard adds it to the meter's."""
        now = self.wall_clock()
        return math.fsum(led.usd_per_hr * led.unmetered_seconds(now) / 3600.0 for led in self._ledgers.values())

    def idle_rate(self) -> tuple[float, int]:
        """USD per hour and GPUs of live workers that run no attempt now (what the guard projects on top of the meter's)."""
        idle = [s.ledger for s in self._workers.values() if s.current is None]
        return sum(led.usd_per_hr for led in idle), sum(led.gpu_count for led in idle)

    def idle_workers(self) -> list[PoolWorker]:
        """Live warm workers that run no attempt now (as of the last :meth:`list_live`): ``hpo cleanup`` may end them."""
        return [state.worker for state in self._workers.values() if state.current is None]

    def retire(self, worker: PoolWorker) -> None:
        """End one warm worker: an ``exit`` assignment, then terminate it (silently, if it is already gone)."""
        state = self._workers.get(worker.index)
        if state is not None and state.worker.id == worker.id:
            self._retire(state, self.wall_clock())
        else:
            self.inner.terminate_worker(worker)

    def overhead_records(self) -> list[WorkerOverhead]:
        """Each worker's overhead as it stands (from the last bills read, else estimated), for the study's records."""
        now = self.wall_clock()
        records = []
        for ledger in self._ledgers.values():
            bill = self._bills.get(ledger.id)
            records.append(
                WorkerOverhead(
                    worker=ledger.id,
                    index=ledger.index,
                    usd=round(ledger.overhead_usd(now, bill), 6),
                    seconds=round(ledger.overhead_seconds(now, bill), 3),
                    billed=bill is not None,
                )
            )
        return records

    def ledgers(self) -> list[WorkerLedger]:
        """Every worker's ledger this pool kept (live and gone), for reports and tests."""
        return list(self._ledgers.values())

    def _read_bills(self, ledgers: Iterable[WorkerLedger], since: float | None) -> dict[str, float]:
        ledgers = list(ledgers)
        start = min(ledger.created_at for ledger in ledgers)
        bills = self.inner.billed_usd([ledger.id for ledger in ledgers], start if since is None else min(since, start))
        self._bills.update(bills)
        return bills

    # -- workers: launching and assigning -----------------------------------------------------

    def _active(self) -> int:
        """Workers that count against ``max_workers``: live and not leaving, and launches not yet confirmed."""
        return sum(not state.exiting for state in self._workers.values()) + len(self._unconfirmed)

    def _idle_worker(self) -> WorkerState | None:
        """The idle worker that has waited longest (None if every one is busy or leaving)."""
        idle = [s for s in self._workers.values() if s.current is None and not s.exiting]
        return min(idle, key=lambda s: (s.idle_since if s.idle_since is not None else -math.inf, s.index), default=None)

    def _write(self, state: WorkerState, action: str, ref: AttemptRef | None) -> int:
        """Write the worker's next assignment; returns its seq."""
        state.seq += 1
        assignment = Assignment.model_validate(
            {
                "worker": state.index,
                "seq": state.seq,
                "action": action,
                "trial": ref.trial if ref is not None else None,
                "attempt": ref.attempt if ref is not None else None,
                "written_at": self.wall_clock(),
            }
        )
        self.volume.write_json(assignment_key(self.study, state.index), assignment.model_dump(mode="json"))
        return state.seq

    def _assign(self, state: WorkerState, ref: AttemptRef) -> Attempt:
        """Give ``ref`` to the idle worker ``state``: a ``run`` assignment, its share, its launch record."""
        seq = self._write(state, "run", ref)
        now_wall = self.wall_clock()
        attempt = self._open(state, ref, seq, now_wall, now_wall)
        self._record(state, attempt)
        return attempt

    def _open(self, state: WorkerState, ref: AttemptRef, seq: int, assigned_at: float, metered_from: float) -> Attempt:
        share = Share(f"{state.worker.id}/{seq}", ref, None, None, metered_from)
        state.ledger.shares.append(share)
        self._share_ledger[share.id] = state.ledger
        attempt = Attempt(ref, seq, assigned_at, share)
        state.current, state.idle_since = attempt, None
        return attempt

    def _launch_new(self, ref: AttemptRef, *, queued: bool) -> WorkerState | None:
        """A new worker for ``ref``, its assignment (seq 1) written first. None: its creation is unconfirmed.

        The index is taken before the launch and never reused, so a worker
        whose creation failed or is unknown can never be mistaken for another.
        A direct launch raises what the inner backend raised (the controller
        queues or confirms it); a launch from the queue keeps the attempt queued.
        """
        index = self._next_index
        self._next_index += 1
        now_wall = self.wall_clock()
        assignment = Assignment(
            worker=index, seq=1, action="run", trial=ref.trial, attempt=ref.attempt, written_at=now_wall
        )
        self.volume.write_json(assignment_key(self.study, index), assignment.model_dump(mode="json"))
        env = {WORKER_POLL_ENV: repr(float(self.worker_poll)), WORKER_IDLE_ENV: repr(float(self.idle_limit))}
        try:
            worker = self.inner.launch_worker(index, env)
        except LaunchUnknownError:
            self._unconfirmed[index] = (ref, now_wall, queued)
            if queued:
                return None
            raise
        except HpoError:
            if self._next_index == index + 1:
                self._next_index = index  # nothing was made, nothing logged: the index is free again
            raise
        state = self._new_state(worker, now_wall)
        state.seq = 1
        attempt = self._open(state, ref, 1, now_wall, now_wall)
        self._record(state, attempt)
        return state

    def _new_state(self, worker: PoolWorker, now_wall: float, *, ready: bool = False) -> WorkerState:
        billing = worker.billing or Billing(None)
        created = billing.started_at if billing.started_at is not None else now_wall
        ledger = self._ledger(worker, created)
        state = WorkerState(
            worker.index,
            worker,
            ledger,
            LogTail(self.volume, worker_log_key(self.study, worker.index), clock=self.clock),
        )
        state.ready = ready
        self._workers[worker.index] = state
        if not self.passive:
            self._write_record(ledger)
        self._next_index = max(self._next_index, worker.index + 1)
        return state

    def _write_record(self, ledger: WorkerLedger) -> None:
        """``worker.json``: what a later controller needs to split this worker's bill once it is gone."""
        if ledger.index in self._recorded:
            return
        record = WorkerRecord(
            index=ledger.index,
            id=ledger.id,
            usd_per_hr=ledger.usd_per_hr,
            gpu_count=ledger.gpu_count,
            gpu_type=ledger.gpu_type,
            created_at=ledger.created_at,
        )
        try:
            self.volume.write_json(worker_record_key(self.study, ledger.index), record.model_dump(mode="json"))
            self._recorded.add(ledger.index)
        except HpoError as exc:  # the next sighting writes it again; only a later controller's split needs it
            log.warning("study %s: cannot record warm worker %d (%s)", self.study, ledger.index, exc)

    def _adopt_gone(self, index: int, now_wall: float) -> None:
        """A worker of an earlier run that is gone: its ledger from ``worker.json`` and its log, for its bill.

        A controller killed before it saved a worker's overhead, or a worker
        that ended while no controller watched, would otherwise leave part of
        the bill on no record. Shares come from the worker's log (its clock,
        clamped into its life): the split between attempts and overhead is as
        good as that clock; the sum is the bill either way.
        """
        try:
            raw = self.volume.read_json(worker_record_key(self.study, index))
            record = WorkerRecord.model_validate(raw)
        except (HpoError, ValidationError, ValueError):
            return  # launched before records existed, or never confirmed: nothing billed that we can name
        if record.index != index or record.id in self._ledgers:
            return
        entries = LogTail(self.volume, worker_log_key(self.study, index), clock=self.clock).read_all()
        last = max((entry.t for entry in entries), default=record.created_at)
        ended = clamp(last, record.created_at, now_wall)
        ledger = WorkerLedger(
            id=record.id,
            index=index,
            usd_per_hr=record.usd_per_hr,
            gpu_count=record.gpu_count,
            gpu_type=record.gpu_type,
            created_at=record.created_at,
            ended_at=ended,
        )
        self._ledgers[record.id] = ledger
        self._recorded.add(index)
        found = rebuild(read_assignment(self.volume, self.study, index), entries, record.created_at, ended)
        for seq, ref, start, end in found.past:
            share = Share(f"{record.id}/{seq}", ref, start, end, start, end)
            ledger.shares.append(share)
            self._share_ledger[share.id] = ledger
        if found.current is not None:  # it died under this attempt: its share ran to the worker's end
            ref, seq, started_at = found.current
            begin = started_at if started_at is not None else ended
            share = Share(f"{record.id}/{seq}", ref, begin, ended, begin, ended)
            ledger.shares.append(share)
            self._share_ledger[share.id] = ledger

    def _ledger(self, worker: PoolWorker, created: float, *, duplicate: bool = False) -> WorkerLedger:
        ledger = self._ledgers.get(worker.id)
        billing = worker.billing or Billing(None)
        if ledger is None:
            ledger = WorkerLedger(
                id=worker.id,
                index=worker.index,
                usd_per_hr=billing.usd_per_hr or 0.0,
                gpu_count=billing.gpu_count,
                gpu_type=billing.gpu_type,
                created_at=created,
                duplicate=duplicate,
            )
            self._ledgers[worker.id] = ledger
        return ledger

    def _record(self, state: WorkerState, attempt: Attempt) -> None:
        """The attempt's ``launch.json``: which worker runs it (``hpo status`` reads it), as the backends write theirs."""
        worker = state.worker
        record: dict[str, object] = {
            "backend": self.inner.name,
            "worker": state.index,
            "worker_id": worker.id,
            "assignment": attempt.seq,
            "launched_at": self.wall_clock(),
        }
        known = {key: worker.detail[key] for key in _RECORD_KEYS if key in worker.detail}
        try:
            LaunchRecord.model_validate({**record, **known})
            record.update(known)
        except ValidationError:
            pass  # a detail a reader would refuse: the record names the worker without it
        self.volume.write_json(self._layout.launch(attempt.ref.trial, attempt.ref.attempt), record)

    def _serve_queue(self) -> None:
        """Give queued attempts to idle workers, else to new ones while there is room (oldest first)."""
        while self._queue:
            ref = self._queue[0]
            idle = self._idle_worker()
            if idle is not None:
                self._queue.pop(0)
                self._assign(idle, ref)
                continue
            if self._active() >= self.max_workers or self.clock() < self._retry_at:
                return
            self._queue.pop(0)
            try:
                self._launch_new(ref, queued=True)
            except HpoError as exc:
                self._failures += 1
                delay = min(MAX_RETRY_DELAY, 2.0**self._failures)
                self._retry_at = self.clock() + delay
                log.warning(
                    "study %s: %s waits on: no worker could be launched (%s); next try in %.0fs",
                    self.study,
                    ref,
                    exc,
                    delay,
                )
                self._queue.insert(0, ref)
                return
            self._failures, self._retry_at = 0, -math.inf

    # -- workers: watching ------------------------------------------------------------------

    def _ensure_adopted(self) -> None:
        if not self._adopted:
            self._adopt(self.inner.list_workers(), self.wall_clock())

    def _adopt(self, listed: dict[int, PoolWorker], now_wall: float) -> None:
        """A controller's first look: rebuild each live worker's state from its assignment and log.

        The next index goes above every index on the volume and every live one.
        A worker whose assignment says ``exit`` is retired again; one with no
        attempt is idle from now (it gets the full ``idle_limit``).
        """
        self._adopted = True
        on_volume: set[int] = set()
        for info in self.volume.list(workers_dir(self.study)):
            folder = info.key[len(workers_dir(self.study)) + 1 :].split("/", 1)[0]
            index = parse_worker_index(folder)
            if index is not None:
                on_volume.add(index)
                self._next_index = max(self._next_index, index + 1)
        if not self.passive:
            for index in sorted(on_volume - set(listed)):
                self._adopt_gone(index, now_wall)
        for index, worker in sorted(listed.items()):
            if worker.index != index:
                continue
            state = self._new_state(worker, now_wall)
            assignment = read_assignment(self.volume, self.study, index)
            entries = state.tail.read_all()
            found = rebuild(assignment, entries, state.ledger.created_at, now_wall)
            state.seq, state.ready = found.seq, bool(entries)
            state.exiting = any(isinstance(entry, ExitEntry) for entry in entries)
            for seq, ref, start, end in found.past:
                share = Share(f"{worker.id}/{seq}", ref, start, end, start, end)
                state.ledger.shares.append(share)
                self._share_ledger[share.id] = state.ledger
            if found.current is not None:
                ref, seq, started_at = found.current
                assigned = found.assigned_at if found.assigned_at is not None else now_wall
                attempt = self._open(state, ref, seq, assigned, max(state.ledger.created_at, min(assigned, now_wall)))
                attempt.started = started_at is not None
                attempt.share.start = started_at
                if found.stopping:
                    attempt.stop_seq = found.seq
                    attempt.kill_at = self.clock() + self.kill_grace + 2 * self.worker_poll
            else:
                state.idle_since = self.clock()
            if found.exit_assigned and not self.passive:
                self._retire(state, now_wall)
        if self._workers:
            log.info("study %s: adopted %d warm worker(s): %s", self.study, len(self._workers), sorted(self._workers))

    def _track(self, listed: dict[int, PoolWorker], now_wall: float) -> None:
        """Fold one listing into the state: gone workers forgotten, confirmed launches taken, strays ended."""
        for index, state in list(self._workers.items()):
            worker = listed.get(index)
            if worker is None or worker.id != state.worker.id:
                log.info("study %s: warm worker %d (%s) is gone", self.study, index, state.worker.id)
                self._gone(state, now_wall)
                continue
            state.worker = worker
            rate = worker.billing.usd_per_hr if worker.billing is not None else None
            if rate and not state.ledger.usd_per_hr:  # a rate learned late replaces an unknown one
                state.ledger.usd_per_hr = rate
                self._recorded.discard(index)
                if not self.passive:
                    self._write_record(state.ledger)
        for index, (ref, launched_at, queued) in list(self._unconfirmed.items()):
            worker = listed.get(index)
            if worker is None:
                self._give_up(index, requeue=queued)
                continue
            del self._unconfirmed[index]
            state = self._new_state(worker, now_wall)
            state.seq = 1
            attempt = self._open(state, ref, 1, launched_at, launched_at)
            self._record(state, attempt)
        for index, worker in listed.items():
            if self.passive and index not in self._workers:
                self._new_state(worker, now_wall)  # launched by the controller since: look, never touch
            elif index not in self._workers and worker.id not in self._terminated:
                self._end_stray(worker, now_wall, "a warm worker this controller did not launch or already retired")

    def _give_up(self, index: int, *, requeue: bool) -> None:
        """A launch whose worker never appeared: tell index ``index`` to exit should it ever boot, and forget it."""
        ref, _at, _queued = self._unconfirmed.pop(index)
        exit_now = Assignment(worker=index, seq=2, action="exit", written_at=self.wall_clock())
        self.volume.write_json(assignment_key(self.study, index), exit_now.model_dump(mode="json"))
        if requeue:
            self._queue.insert(0, ref)

    def _settle_duplicates(self, extras: Iterable[PoolWorker], now_wall: float) -> None:
        """Terminate at once every younger worker sharing an index: it would run the same assignment."""
        for worker in extras:
            if worker.id not in self._terminated:
                self._end_stray(worker, now_wall, f"a second live worker with index {worker.index}")

    def _end_stray(self, worker: PoolWorker, now_wall: float, why: str) -> None:
        log.warning("study %s: terminating worker %s (%s); its bill is overhead", self.study, worker.id, why)
        billing = worker.billing or Billing(None)
        ledger = self._ledger(
            worker, billing.started_at if billing.started_at is not None else now_wall, duplicate=True
        )
        ledger.ended_at = now_wall
        self._terminated.add(worker.id)
        self._next_index = max(self._next_index, worker.index + 1)
        self.inner.terminate_worker(worker)

    def _apply(self, state: WorkerState, entries: list[LogEntry], low: float, now_wall: float) -> None:
        """Fold one poll's new log entries of a worker into its state (see :mod:`hpo.pool._ledger` for the times)."""
        ignored: list[str] = []
        for entry in entries:
            state.ready = True
            attempt = state.current
            if isinstance(entry, BootEntry):
                continue
            if isinstance(entry, ExitEntry):
                state.exiting = True
                self._hand_back(state, now_wall)
                continue
            if (
                attempt is None
                or entry.seq != attempt.seq
                or (entry.trial, entry.attempt) != (attempt.ref.trial, attempt.ref.attempt)
            ):
                ignored.append(f"{entry.type} of seq {entry.seq} (trial {entry.trial} attempt {entry.attempt})")
                continue
            floor = max(low, attempt.assigned_at, state.ledger.created_at)
            if isinstance(entry, StartEntry):
                if not attempt.started:
                    attempt.started = True
                    attempt.share.start = _when(entry.t, floor, now_wall)
                continue
            assert isinstance(entry, EndEntry)
            start = attempt.share.start
            attempt.share.end = _when(entry.t, max(floor, start if start is not None else floor), now_wall)
            if start is None:
                attempt.share.start = attempt.share.end  # it never said it started: it ran nothing the bill pays for
            self._close(state, now_wall)
        if ignored:
            log.warning(
                "%s: ignoring %d entr%s that name no attempt assigned to worker %d now (first: %s)",
                state.tail.key,
                len(ignored),
                "y" if len(ignored) == 1 else "ies",
                state.index,
                ignored[0],
            )

    def _close(self, state: WorkerState, now_wall: float) -> None:
        """The worker's attempt is over: it leaves the listing now, and the worker is idle from now."""
        attempt = state.current
        if attempt is not None:
            if attempt.share.end is None:
                attempt.share.end = now_wall
            attempt.share.metered_to = now_wall
        state.current, state.idle_since = None, self.clock()

    def _kill_hung(self, now_wall: float) -> None:
        """Workers that did not end a stopped attempt within the grace: terminated (a silent one is let off)."""
        now = self.clock()
        for state in list(self._workers.values()):
            attempt = state.current
            if attempt is None or attempt.kill_at is None or now < attempt.kill_at:
                continue
            if not state.ready and not attempt.started:
                # Still provisioning when the stop came: it reads the stop first and never runs the attempt.
                self._close(state, now_wall)
                continue
            log.warning(
                "study %s: warm worker %d did not stop %s within %.0fs; terminating it",
                self.study,
                state.index,
                attempt.ref,
                self.kill_grace + 2 * self.worker_poll,
            )
            self._terminated.add(state.worker.id)
            self.inner.terminate_worker(state.worker)
            self._gone(state, now_wall)

    def _retire_idle(self, now_wall: float) -> None:
        """Idle past ``idle_limit`` (or beyond ``max_workers``, or leaving on its own): ``exit`` and terminate."""
        now = self.clock()
        count = sum(not state.exiting for state in self._workers.values())
        for state in sorted(self._workers.values(), key=lambda s: -s.index):
            if state.current is not None:
                continue
            over = count > self.max_workers
            idle_too_long = state.idle_since is not None and now - state.idle_since >= self.idle_limit
            if over or idle_too_long or state.exiting:
                if not state.exiting:
                    count -= 1
                self._retire(state, now_wall)

    def _retire(self, state: WorkerState, now_wall: float) -> None:
        self._write(state, "exit", None)
        self._terminated.add(state.worker.id)
        self.inner.terminate_worker(state.worker)
        self._gone(state, now_wall)

    def _hand_back(self, state: WorkerState, now_wall: float) -> None:
        """A worker going away with an attempt it never started: the attempt goes back to the queue's head.

        Never started means no ``start`` in the worker's log and no event file
        of the attempt on the volume: it ran nowhere, so it is not lost (a
        trial's attempts are not spent on a worker a preemption took first).
        """
        attempt = state.current
        if attempt is None or attempt.started or attempt.stop_seq is not None or self.passive:
            return
        events = self._layout.events(attempt.ref.trial, attempt.ref.attempt)
        try:
            if self.volume.size(events) is not None:
                return
        except HpoError:
            return  # cannot tell: lost, as any attempt of a vanished worker
        log.info("study %s: warm worker %d went away before starting %s; it goes to another", self.study, state.index, attempt.ref)
        self._close(state, now_wall)
        self._queue.insert(0, attempt.ref)

    def _gone(self, state: WorkerState, now_wall: float) -> None:
        """Forget a worker that ended (its attempt is lost, unless it never started); its ledger stays for the bill."""
        self._hand_back(state, now_wall)
        if state.current is not None:
            self._close(state, now_wall)
        if state.ledger.ended_at is None:
            state.ledger.ended_at = now_wall
        self._workers.pop(state.index, None)

    # -- handles ------------------------------------------------------------------------------

    def _state_of(self, ref: AttemptRef) -> WorkerState | None:
        return next((s for s in self._workers.values() if s.current is not None and s.current.ref == ref), None)

    def _handle_of(self, ref: AttemptRef) -> WorkerHandle | None:
        state = self._state_of(ref)
        if state is not None and state.current is not None:
            return self._handle(state, state.current)
        if ref in self._queue or any(pending == ref for pending, _at, _q in self._unconfirmed.values()):
            return _queued_handle(ref)
        return None

    def _handle(self, state: WorkerState, attempt: Attempt) -> WorkerHandle:
        """The attempt's handle: its worker's detail and rate, billing from ``metered_from``."""
        worker = state.worker
        billing = worker.billing or Billing(None)
        running = attempt.started and worker.status == "running"
        detail = {**worker.detail, "worker": state.index, "worker_id": worker.id, "assignment": attempt.seq}
        return WorkerHandle(
            attempt.ref,
            attempt.share.id,
            "running" if running else "starting",
            detail,
            Billing(billing.usd_per_hr, billing.gpu_count, billing.gpu_type, started_at=attempt.share.metered_from),
        )

    def _live(self) -> dict[AttemptRef, WorkerHandle]:
        live = {s.current.ref: self._handle(s, s.current) for s in self._workers.values() if s.current is not None}
        for ref in [*self._queue, *(pending for pending, _at, _q in self._unconfirmed.values())]:
            live.setdefault(ref, _queued_handle(ref))
        return live


def _when(logged: float, floor: float, seen: float) -> float:
    """When a log entry read between ``floor`` and ``seen`` (provider clock) happened: its own time if it fits.

    A worker's clock may be off the provider's (a rehearsal's fake runs 20x
    faster than the pods' clocks, a host's clock drifts): a time outside the
    window it must lie in is replaced by the poll that read it, so a share is
    right to one poll rather than squeezed to nothing at the window's edge.
    """
    return logged if floor <= logged <= seen else max(floor, seen)


def _queued_handle(ref: AttemptRef) -> WorkerHandle:
    """An attempt waiting for a worker: ``starting``, billing nothing (no worker bills for it yet)."""
    return WorkerHandle(ref, f"queued/{ref.trial}.{ref.attempt}", "starting", {"queued": True}, Billing(0.0))
