"""The warm pool (hpo.pool.WarmPool) over a scripted inner backend: the test plays the workers by appending to their logs.

No process runs and no clock ticks unless a test moves it; every call the pool
makes to its inner backend is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from memory_volume import MemoryVolume

from hpo.backends import AttemptRef, Backend, Billing, WorkerHandle
from hpo.errors import CapacityError, LaunchUnknownError
from hpo.pool import (
    WORKER_IDLE_ENV,
    WORKER_POLL_ENV,
    Assignment,
    BootEntry,
    EndEntry,
    ExitEntry,
    StartEntry,
    assignment_key,
    encode_entry,
    worker_log_key,
)
from hpo.pool._ledger import split_bill
from hpo.pool._pool import WarmPool
from hpo.records import read_launch
from hpo.workers import PoolWorker

STUDY = "s"
RATE = 1.8  # USD per hour: half a cent per 10 s


class Clock:
    """One clock for the pool's monotonic and wall time (they move together here)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Inner(Backend):
    """Workers that live as long as the test says; every call recorded."""

    clock: Clock
    volume: MemoryVolume
    name: str = "scripted"
    rate: float = RATE
    alive: dict[int, PoolWorker] = field(default_factory=dict)
    surplus: list[PoolWorker] = field(default_factory=list)
    launched: list[tuple[int, dict[str, str], Assignment | None]] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    bills: dict[str, float] = field(default_factory=dict)
    bill_calls: list[tuple[list[str], float]] = field(default_factory=list)
    listings: int = 0
    faults: list[tuple[Exception, bool]] = field(default_factory=list)  # (error, made anyway) for the next launches
    direct: dict[AttemptRef, WorkerHandle] = field(default_factory=dict)  # one-attempt workers it lists
    direct_terminated: list[str] = field(default_factory=list)

    @property
    def supports_workers(self) -> bool:
        return True

    def launch(self, ref: AttemptRef) -> WorkerHandle:
        raise AssertionError("the pool never launches an attempt worker")

    def list_live(self) -> dict[AttemptRef, WorkerHandle]:
        return dict(self.direct)

    def terminate(self, handle: WorkerHandle) -> None:
        assert self.direct.get(handle.ref) == handle, "the pool terminates only one-attempt workers it was shown"
        self.direct_terminated.append(handle.id)

    def launch_worker(self, index: int, env: Any) -> PoolWorker:
        key = assignment_key(STUDY, index)
        seen = Assignment.model_validate(self.volume.read_json(key)) if self.volume.exists(key) else None
        self.launched.append((index, dict(env), seen))
        worker = make_worker(index, f"pod{index}", self.clock(), self.rate)
        if self.faults:
            error, made = self.faults.pop(0)
            if made:
                self.alive[index] = worker
            raise error
        self.alive[index] = worker
        return worker

    def list_workers(self) -> dict[int, PoolWorker]:
        self.listings += 1
        return dict(self.alive)

    def worker_extras(self) -> list[PoolWorker]:
        return [w for w in self.surplus if w.id not in self.terminated]

    def terminate_worker(self, worker: PoolWorker) -> None:
        self.terminated.append(worker.id)
        if self.alive.get(worker.index) == worker:
            del self.alive[worker.index]

    def billed_usd(self, worker_ids: list[str], since: float) -> dict[str, float]:
        self.bill_calls.append((list(worker_ids), since))
        return {i: self.bills[i] for i in worker_ids if i in self.bills}


def make_worker(index: int, worker_id: str, created: float, rate: float = RATE) -> PoolWorker:
    billing = Billing(rate, 1, "NVIDIA A40", started_at=created)
    return PoolWorker(
        index, worker_id, "running", {"pod_id": worker_id, "cost_per_hr": rate, "gpu_type": "NVIDIA A40"}, billing
    )


class CountingVolume(MemoryVolume):
    """Counts reads per key and calls to sizes()."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads: dict[str, int] = {}
        self.sizes_calls = 0

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().read_range(key, offset, length)

    def sizes(self, keys: Any) -> dict[str, int | None]:
        self.sizes_calls += 1
        return super().sizes(keys)


class World:
    """A pool, its inner backend, its volume and clock; the hand that writes the workers' logs."""

    def __init__(self, *, max_workers: int = 2, idle_limit: float = 120.0) -> None:
        self.clock = Clock()
        self.volume = CountingVolume(clock=self.clock)
        self.inner = Inner(self.clock, self.volume)
        self.max_workers = max_workers
        self.idle_limit = idle_limit
        self.pool = self.new_pool()

    def new_pool(self) -> WarmPool:
        return WarmPool(
            self.inner, self.volume, STUDY, max_workers=self.max_workers, idle_limit=self.idle_limit,
            worker_poll=0.5, kill_grace=5.0, clock=self.clock, wall_clock=self.clock,
        )  # fmt: skip

    def assignment(self, index: int) -> Assignment:
        return Assignment.model_validate(self.volume.read_json(assignment_key(STUDY, index)))

    def write(self, index: int, entry: Any) -> None:
        self.volume.append_bytes(worker_log_key(STUDY, index), encode_entry(entry))

    def boot(self, index: int) -> None:
        self.write(index, BootEntry(t=self.clock()))

    def start(self, index: int, seq: int, ref: AttemptRef) -> None:
        self.write(index, StartEntry(t=self.clock(), seq=seq, trial=ref.trial, attempt=ref.attempt))

    def end(self, index: int, seq: int, ref: AttemptRef, code: int = 0) -> None:
        self.write(index, EndEntry(t=self.clock(), seq=seq, trial=ref.trial, attempt=ref.attempt, exit_code=code))


A, B, C, D = (AttemptRef(n, 0) for n in range(4))


def test_first_launch_writes_assignment_seq_1_before_launch_worker() -> None:
    world = World()
    handle = world.pool.launch(A)
    [(index, env, seen)] = world.inner.launched
    assert index == 0
    assert seen is not None and (seen.seq, seen.action, seen.trial, seen.attempt) == (1, "run", 0, 0)
    assert env == {WORKER_POLL_ENV: "0.5", WORKER_IDLE_ENV: "120.0"}
    assert handle.ref == A and handle.id == "pod0/1" and handle.status == "starting"
    assert handle.detail["worker"] == 0 and handle.detail["pod_id"] == "pod0"
    assert (
        handle.billing is not None and handle.billing.usd_per_hr == RATE and handle.billing.started_at == world.clock()
    )
    record = read_launch(world.volume, f"hpo/{STUDY}/trials/0/attempts/0/launch.json")
    assert record is not None and record.backend == "scripted" and record.pod_id == "pod0"
    assert world.volume.read_json(f"hpo/{STUDY}/trials/0/attempts/0/launch.json")["worker"] == 0

    world.boot(0)
    world.start(0, 1, A)
    live = world.pool.list_live()
    assert live[A].status == "running" and live[A].id == "pod0/1"


def test_next_attempt_goes_to_the_same_worker() -> None:
    world = World()
    world.pool.launch(A)
    world.boot(0)
    world.start(0, 1, A)
    world.clock.advance(30)
    world.end(0, 1, A)
    assert world.pool.list_live() == {}
    handle = world.pool.launch(B)
    assert len(world.inner.launched) == 1  # no new worker
    assert world.assignment(0).model_dump(exclude={"written_at"}) == {
        "worker": 0, "seq": 2, "action": "run", "trial": 1, "attempt": 0,
    }  # fmt: skip
    assert handle.id == "pod0/2"
    world.start(0, 2, B)
    assert world.pool.list_live()[B].status == "running"


def test_attempts_beyond_max_workers_queue_then_take_the_first_free_worker() -> None:
    world = World(max_workers=1)
    world.pool.launch(A)
    queued = world.pool.launch(B)
    assert queued.status == "starting" and queued.billing is not None and queued.billing.usd_per_hr == 0.0
    assert len(world.inner.launched) == 1
    world.boot(0)
    world.start(0, 1, A)
    live = world.pool.list_live()
    assert set(live) == {A, B} and live[B].status == "starting" and live[B].id.startswith("queued/")
    assert world.pool.launch(B) == queued  # launching a queued attempt again changes nothing
    world.end(0, 1, A)
    live = world.pool.list_live()
    assert set(live) == {B} and live[B].id == "pod0/2"
    assert world.assignment(0).seq == 2 and world.assignment(0).trial == 1
    assert len(world.inner.launched) == 1


def test_terminate_writes_stop_and_kills_a_worker_that_hangs_past_the_grace() -> None:
    world = World()
    handle = world.pool.launch(A)
    world.boot(0)
    world.start(0, 1, A)
    world.pool.list_live()
    world.pool.terminate(handle)
    world.pool.terminate(handle)  # the controller repeats itself: one stop
    stop = world.assignment(0)
    assert (stop.seq, stop.action, stop.trial, stop.attempt) == (2, "stop", 0, 0)
    world.clock.advance(5.9)
    assert A in world.pool.list_live()
    assert world.inner.terminated == []
    world.clock.advance(0.2)  # past kill_grace + 2 * worker_poll = 6 s
    assert world.pool.list_live() == {}
    assert world.inner.terminated == ["pod0"]


def test_terminate_of_an_attempt_that_ends_in_time_keeps_the_worker() -> None:
    world = World()
    handle = world.pool.launch(A)
    world.boot(0)
    world.start(0, 1, A)
    world.pool.list_live()
    world.pool.terminate(handle)
    world.clock.advance(2)
    world.end(0, 1, A, code=-15)
    assert world.pool.list_live() == {}
    world.clock.advance(10)
    world.pool.list_live()
    assert world.inner.terminated == []
    world.pool.launch(B)
    assert world.assignment(0).seq == 3 and len(world.inner.launched) == 1


def test_a_stop_before_the_worker_said_a_word_leaves_it_alive() -> None:
    world = World()
    handle = world.pool.launch(A)
    world.pool.list_live()
    world.pool.terminate(handle)
    world.clock.advance(7)
    assert world.pool.list_live() == {}
    assert world.inner.terminated == []  # still provisioning: it reads the stop first and runs nothing


def test_a_worker_that_vanishes_drops_its_attempt() -> None:
    world = World()
    world.pool.launch(A)
    world.boot(0)
    world.start(0, 1, A)
    assert A in world.pool.list_live()
    del world.inner.alive[0]
    assert world.pool.list_live() == {}
    world.pool.launch(B)
    assert [index for index, _env, _seen in world.inner.launched] == [0, 1]  # never index 0 again


def test_an_idle_worker_is_retired_after_the_idle_limit() -> None:
    world = World(idle_limit=120)
    world.pool.launch(A)
    world.boot(0)
    world.start(0, 1, A)
    world.end(0, 1, A)
    world.pool.list_live()
    world.clock.advance(119)
    world.pool.list_live()
    assert world.inner.terminated == []
    world.clock.advance(1)
    world.pool.list_live()
    assert world.assignment(0).action == "exit" and world.assignment(0).seq == 2
    assert world.inner.terminated == ["pod0"]
    world.pool.launch(B)
    assert [index for index, _env, _seen in world.inner.launched] == [0, 1]


def test_retire_all_and_close() -> None:
    world = World()
    world.pool.launch(A)
    world.pool.launch(B)
    for index, ref in ((0, A), (1, B)):
        world.boot(index)
        world.start(index, 1, ref)
    world.end(0, 1, A)
    world.pool.list_live()
    world.pool.close()  # idle worker 0 ends; worker 1 runs B and stays for the next controller
    assert world.inner.terminated == ["pod0"]
    world.pool.retire_all()
    assert world.inner.terminated == ["pod0", "pod1"] and world.assignment(1).action == "exit"


def test_adoption_rebuilds_who_runs_what_from_the_volume() -> None:
    world = World(max_workers=3)
    world.pool.launch(A)
    world.pool.launch(C)
    for index, ref in ((0, A), (1, C)):
        world.boot(index)
        world.start(index, 1, ref)
    world.clock.advance(40)
    world.end(0, 1, A)
    world.pool.list_live()
    world.pool.launch(B)  # worker 0, seq 2
    world.clock.advance(5)
    world.start(0, 2, B)
    world.pool.terminate(world.pool.list_live()[C])  # worker 1: stop, seq 2
    world.volume.write_json(
        assignment_key(STUDY, 7), {"worker": 7, "seq": 1, "action": "run", "trial": 9, "attempt": 0}
    )

    fresh = world.new_pool()  # the controller crashed; a new one adopts
    live = fresh.list_live()
    assert set(live) == {B, C}
    assert live[B].id == "pod0/2" and live[B].status == "running" and live[C].id == "pod1/1"
    world.clock.advance(7)
    assert set(fresh.list_live()) == {B}  # C was told to stop and did not: its worker is killed
    assert world.inner.terminated == ["pod1"]
    fresh.launch(D)
    assert world.inner.launched[-1][0] == 8  # above every index on the volume (7) and live
    # The past (A on worker 0) is in the ledger too: its share splits worker 0's bill.
    world.inner.bills["pod0"] = 1.0
    shares = fresh.billed_usd(["pod0/1", "pod0/2"], 0.0)
    assert shares["pod0/1"] == pytest.approx(RATE * 40 / 3600, abs=1e-6)  # A ran 40 s, per the log
    assert shares["pod0/2"] == pytest.approx(RATE * 7 / 3600, abs=1e-6)  # B runs on, 7 s so far


def test_a_worker_gone_before_the_new_controller_still_has_its_bill_split() -> None:
    """The last controller died before saving a worker's overhead, and the worker ended with nobody watching."""
    world = World(max_workers=2)
    world.pool.launch(A)
    world.boot(0)
    world.clock.advance(30)  # provisioning and image pull
    world.start(0, 1, A)
    world.pool.list_live()
    world.clock.advance(60)
    world.end(0, 1, A)
    world.clock.advance(20)  # idle, then it ends itself: no controller
    world.write(0, ExitEntry(t=world.clock(), reason="idle"))
    del world.inner.alive[0]
    world.inner.bills["pod0"] = RATE * 110 / 3600  # its whole life, as the provider bills it

    fresh = world.new_pool()
    assert fresh.list_live() == {}
    share = fresh.billed_usd(["pod0/1"], 0.0)["pod0/1"]
    assert share == pytest.approx(RATE * 60 / 3600, abs=1e-6)  # A's minute, by the worker's log
    fresh.overhead_usd(refresh=True)
    [record] = fresh.overhead_records()
    assert record.worker == "pod0" and record.billed
    assert share + record.usd == pytest.approx(world.inner.bills["pod0"], abs=1e-6)  # the bill, to the cent


def test_adoption_of_an_idle_worker_gives_it_the_full_idle_limit() -> None:
    world = World()
    world.pool.launch(A)
    world.boot(0)
    world.start(0, 1, A)
    world.end(0, 1, A)
    world.pool.list_live()
    world.clock.advance(100)
    fresh = world.new_pool()
    assert fresh.list_live() == {}
    world.clock.advance(100)
    fresh.list_live()
    assert world.inner.terminated == []
    world.clock.advance(20)
    fresh.list_live()
    assert world.inner.terminated == ["pod0"]


def test_adoption_retires_workers_beyond_max_workers_when_idle() -> None:
    world = World(max_workers=2)
    world.pool.launch(A)
    world.pool.launch(B)
    for index, ref in ((0, A), (1, B)):
        world.boot(index)
        world.start(index, 1, ref)
        world.end(index, 1, ref)
    world.pool.list_live()
    world.max_workers = 1
    fresh = world.new_pool()
    fresh.list_live()
    assert world.inner.terminated == ["pod1"]


def test_bad_lines_and_entries_naming_another_attempt_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    world.pool.launch(A)
    world.pool.launch(B)
    world.boot(0)
    world.start(0, 1, A)
    world.volume.append_bytes(worker_log_key(STUDY, 0), b'{"type": "end", "seq": "x"}\nnot json\n')
    world.end(0, 1, B)  # worker 0 claims worker 1's attempt ended
    world.end(0, 7, A)  # and an assignment it never got
    with caplog.at_level(logging.WARNING):
        live = world.pool.list_live()
    assert set(live) == {A, B}
    key = worker_log_key(STUDY, 0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(key in w and "skipped 2" in w for w in warnings)
    assert any(key in w and "ignoring 2 entries" in w for w in warnings)
    assert len(world.inner.launched) == 2 and world.inner.terminated == []


def test_the_cost_split_adds_up_to_the_bill_to_the_cent() -> None:
    world = World(idle_limit=1000)
    created = world.clock()
    world.pool.launch(A)
    world.clock.advance(90)  # provisioning and pull
    world.boot(0)
    world.pool.list_live()
    world.clock.advance(3)
    world.start(0, 1, A)
    world.clock.advance(100)
    world.end(0, 1, A)
    world.pool.list_live()
    world.clock.advance(30)  # idle
    world.pool.launch(B)
    world.clock.advance(1)
    world.start(0, 2, B)
    world.pool.list_live()
    world.clock.advance(200)
    world.end(0, 2, B)
    world.pool.list_live()
    world.clock.advance(10)  # idle
    world.pool.launch(C)
    world.start(0, 3, C)
    world.clock.advance(50)
    world.end(0, 3, C)
    world.pool.list_live()
    world.clock.advance(25)  # idle, then retired
    world.pool.retire_all()
    lifetime = world.clock() - created
    bill = round(RATE * lifetime / 3600 + 0.0004, 4)  # the provider's figure, off the clock's by a little
    world.inner.bills["pod0"] = bill
    shares = world.pool.billed_usd(["pod0/1", "pod0/2", "pod0/3"], created + 50)
    assert world.inner.bill_calls[-1] == (["pod0"], created)  # the whole bill, from the worker's creation
    assert shares["pod0/1"] == pytest.approx(RATE * 100 / 3600, abs=1e-6)
    assert shares["pod0/2"] == pytest.approx(RATE * 200 / 3600, abs=1e-6)
    assert shares["pod0/3"] == pytest.approx(RATE * 50 / 3600, abs=1e-6)
    overhead = world.pool.overhead_usd()
    assert round(sum(shares.values()) + overhead, 2) == round(bill, 2)
    assert sum(shares.values()) + overhead == pytest.approx(bill, abs=1e-12)
    assert world.pool.overhead_seconds() == pytest.approx(lifetime - 350 + 0.0004 / RATE * 3600, abs=0.01)


def test_split_bill_caps_shares_at_the_bill() -> None:
    split = split_bill(0.1, 3.6, [("a", 60.0), ("b", 60.0)])  # 0.06 each by the clock, 0.1 billed
    assert split.shares == pytest.approx({"a": 0.06, "b": 0.04}) and split.overhead_usd == pytest.approx(0.0)
    assert sum(split.shares.values()) + split.overhead_usd == pytest.approx(0.1, abs=1e-15)
    assert split_bill(float("nan"), 3.6, [("a", 10.0)]).shares == {"a": 0.0}


def test_overhead_estimate_counts_idle_time_only() -> None:
    world = World(idle_limit=1000)
    world.pool.launch(A)
    world.boot(0)
    world.start(0, 1, A)
    world.clock.advance(100)
    world.end(0, 1, A)
    world.pool.list_live()
    assert world.pool.overhead_estimate_usd() == pytest.approx(0.0)  # the attempt's handle billed it all
    world.clock.advance(60)
    assert world.pool.overhead_estimate_usd() == pytest.approx(RATE * 60 / 3600)
    assert world.pool.idle_rate() == (RATE, 1)


def test_a_duplicate_worker_index_is_terminated_at_once_and_billed_to_overhead() -> None:
    world = World()
    world.pool.launch(A)
    twin = make_worker(0, "pod0b", world.clock() + 1)
    world.inner.surplus.append(twin)
    world.pool.list_live()
    assert world.inner.terminated == ["pod0b"]
    world.pool.list_live()
    assert world.inner.terminated == ["pod0b"]  # once
    assert world.pool.extras() == []
    world.inner.bills.update({"pod0": 0.0, "pod0b": 0.25})
    assert world.pool.overhead_usd() == pytest.approx(0.25)


def test_a_stray_worker_is_terminated() -> None:
    world = World()
    world.pool.list_live()
    world.inner.alive[5] = make_worker(5, "pod5", world.clock())
    world.pool.list_live()
    assert world.inner.terminated == ["pod5"]
    world.pool.launch(A)
    assert world.inner.launched[-1][0] == 6


def test_only_grown_logs_are_read() -> None:
    world = World()
    world.pool.launch(A)
    world.pool.launch(B)
    for index, ref in ((0, A), (1, B)):
        world.boot(index)
        world.start(index, 1, ref)
    world.pool.list_live()
    world.volume.reads.clear()
    sizes_before = world.volume.sizes_calls
    world.clock.advance(5)
    world.end(0, 1, A)
    assert set(world.pool.list_live()) == {B}
    assert world.volume.sizes_calls == sizes_before + 1
    assert world.volume.reads == {worker_log_key(STUDY, 0): 1}
    world.volume.reads.clear()
    world.pool.list_live()
    assert world.volume.reads == {}


def test_a_failed_launch_frees_its_index() -> None:
    world = World()
    world.inner.faults.append((CapacityError("no A40 left"), False))
    with pytest.raises(CapacityError):
        world.pool.launch(A)
    world.pool.launch(A)
    assert [index for index, _env, _seen in world.inner.launched] == [0, 0]


def test_an_unknown_launch_is_confirmed_by_the_next_listing() -> None:
    world = World()
    world.inner.faults.append((LaunchUnknownError("POST /pods: 502"), True))
    with pytest.raises(LaunchUnknownError):
        world.pool.launch(A)
    live = world.pool.list_live()
    assert live[A].id == "pod0/1"
    world.boot(0)
    world.start(0, 1, A)
    assert world.pool.list_live()[A].status == "running"


def test_an_unknown_launch_the_listing_does_not_show_is_told_to_exit() -> None:
    world = World()
    world.inner.faults.append((LaunchUnknownError("POST /pods: 502"), False))
    with pytest.raises(LaunchUnknownError):
        world.pool.launch(A)
    assert world.pool.list_live() == {}
    assert world.assignment(0).action == "exit"
    world.inner.alive[0] = make_worker(0, "pod0", world.clock())  # it shows up after all
    world.pool.list_live()
    assert world.inner.terminated == ["pod0"]
    world.pool.launch(A)
    assert world.inner.launched[-1][0] == 1


def test_an_attempt_its_worker_never_started_goes_to_another_worker() -> None:
    """A preempted worker that had not begun its attempt (no start logged, no event file): not lost, reassigned."""
    world = World(max_workers=2)
    world.pool.launch(A)
    world.pool.launch(B)
    world.boot(0)
    world.boot(1)
    world.start(1, 1, B)
    world.pool.list_live()
    world.write(0, ExitEntry(t=world.clock(), reason="sigterm"))  # w0 is going away, A never ran
    del world.inner.alive[0]
    live = world.pool.list_live()
    assert set(live) == {A, B}  # A waits for a worker again instead of being counted lost
    assert live[A].status == "starting"
    assert [i for i, _e, _s in world.inner.launched] == [0, 1, 2]  # w2 takes A (room: w0 is gone)
    assert world.assignment(2).trial == A.trial and world.assignment(2).seq == 1


def test_a_started_attempt_of_a_vanished_worker_is_lost() -> None:
    world = World(max_workers=2)
    world.pool.launch(A)
    world.boot(0)
    world.start(0, 1, A)
    world.pool.list_live()
    del world.inner.alive[0]
    assert A not in world.pool.list_live()  # the controller counts it lost (a preemption), as for any worker


def test_a_queued_attempt_waits_between_failed_launches() -> None:
    world = World(max_workers=1)
    world.pool.launch(A)
    world.pool.launch(B)  # queued
    world.boot(0)
    world.start(0, 1, A)
    world.pool.list_live()
    del world.inner.alive[0]  # A's worker is preempted under it: A is lost, and there is room for a new one
    world.inner.faults.append((CapacityError("no A40 left"), False))
    assert set(world.pool.list_live()) == {B}
    assert len(world.inner.launched) == 2
    world.pool.list_live()
    assert len(world.inner.launched) == 2  # no new try before the delay
    world.clock.advance(2)
    live = world.pool.list_live()
    assert live[B].id == "pod1/1" and [i for i, _e, _s in world.inner.launched] == [0, 1, 1]
