"""One controller per study: a live lease refuses, a stale one is taken over, the journal fences the rest."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hooked_volume import HookedVolume

from hpo.errors import JournalFencedError, LeaseError
from hpo.journal import StudyStorage, open_storage
from hpo.lease import Lease
from hpo.volume import Volume


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _lease(volume: Volume, clock: FakeClock) -> Lease:
    return Lease(volume, "demo", ttl=60, clock=clock, sleep=lambda _: None)


def test_live_lease_refuses_a_second_controller_naming_the_holder(volume: Volume) -> None:
    clock = FakeClock()
    first = _lease(volume, clock)
    first.acquire()
    with pytest.raises(LeaseError) as info:
        _lease(volume, clock).acquire()
    assert "demo" in str(info.value) and socket.gethostname() in str(info.value)
    assert "pid" in str(info.value)


def test_expired_lease_is_taken_over(volume: Volume) -> None:
    clock = FakeClock()
    first = _lease(volume, clock)
    first.acquire()
    clock.now += 61
    second = _lease(volume, clock)
    second.acquire()
    assert volume.read_json("hpo/demo/lease.json")["id"] == second.id
    with pytest.raises(LeaseError, match="taken over"):
        first.renew()


def test_lease_of_a_dead_process_on_this_host_is_stale_at_once(volume: Volume) -> None:
    clock = FakeClock()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    volume.write_json(
        "hpo/demo/lease.json", {"id": "old", "host": socket.gethostname(), "pid": dead.pid, "expires_at": clock.now + 60}
    )
    lease = _lease(volume, clock)
    lease.acquire()
    assert lease.held


def test_a_lease_is_renewed_every_third_of_its_ttl_not_every_poll(volume: Volume) -> None:
    clock = FakeClock()
    lease = _lease(volume, clock)
    lease.acquire()
    start = clock.now
    for _ in range(19):  # polls a second apart: nothing due, nothing read or written
        clock.now += 1
        lease.renew()
    assert volume.read_json("hpo/demo/lease.json")["expires_at"] == start + 60
    clock.now += 1  # a third of the TTL since the last write
    lease.renew()
    assert volume.read_json("hpo/demo/lease.json")["expires_at"] == start + 80
    clock.now += 5
    lease.renew(force=True)
    assert volume.read_json("hpo/demo/lease.json")["expires_at"] == start + 85
    clock.now -= 30  # the wall clock stepped back: renew at once rather than trust the interval
    lease.renew()
    assert volume.read_json("hpo/demo/lease.json")["expires_at"] == start + 55


def test_a_lease_taken_over_stops_its_old_holder_at_its_next_renewal(volume: Volume) -> None:
    clock = FakeClock()
    lease = _lease(volume, clock)
    lease.acquire()
    taker = {"id": "another", "host": "elsewhere", "pid": 4242, "expires_at": clock.now + 60}
    volume.write_json("hpo/demo/lease.json", taker)  # as a controller that found it stale would
    clock.now += 10
    lease.renew()  # not due: nothing read; the journal's fence guards every act meanwhile
    assert lease.held
    clock.now += 10
    with pytest.raises(LeaseError, match="taken over by pid 4242 on elsewhere"):
        lease.renew()
    assert not lease.held
    assert volume.read_json("hpo/demo/lease.json") == taker  # and it never wrote over the new holder


def test_release_removes_only_our_own_lease(volume: Volume) -> None:
    clock = FakeClock()
    lease = _lease(volume, clock)
    lease.acquire()
    lease.release()
    assert not volume.exists("hpo/demo/lease.json")


def test_two_controllers_holding_the_lease_drive_the_journal_one_at_a_time(volume: Volume, tmp_path: Path) -> None:
    """The lease has no compare-and-swap: the journal's epochs stop the controller that opened first."""
    clock = FakeClock()
    old = Lease(volume, "demo", ttl=60, clock=clock, sleep=lambda _: None)
    old.acquire()
    old_journal = open_storage(volume, "demo", writer=True, cache_dir=tmp_path / "old")
    old_journal.optuna.create_new_study([optuna.study.StudyDirection.MINIMIZE], "demo")
    old_journal.flush()
    clock.now += 61  # the old controller sleeps past its lease's expiry
    paused = HookedVolume(volume)
    holders: list[StudyStorage] = []

    def another_controller_takes_the_lease_and_the_journal() -> None:
        Lease(volume, "demo", ttl=60, clock=clock, sleep=lambda _: None).acquire()
        holders.append(open_storage(volume, "demo", writer=True, cache_dir=tmp_path / "stale-reader"))

    # A third controller read the expired lease, then paused before writing its own;
    # meanwhile a second one took the lease and opened the journal.
    paused.pause_after("read_bytes", "hpo/demo/lease.json", another_controller_takes_the_lease_and_the_journal)
    late = Lease(paused, "demo", ttl=60, clock=clock, sleep=lambda _: None)
    late.acquire()  # it writes over the live lease and reads its own id back: both "hold" the study
    assert late.held
    late_journal = open_storage(volume, "demo", writer=True, cache_dir=tmp_path / "late")
    (second,) = holders
    assert late_journal.epoch is not None and second.epoch is not None and late_journal.epoch > second.epoch
    with pytest.raises(JournalFencedError):
        second.flush()  # before its next act in the world
    with pytest.raises(JournalFencedError):
        old_journal.flush()
    late_journal.optuna.create_new_trial(late_journal.optuna.get_study_id_from_name("demo"))
    late_journal.flush()
