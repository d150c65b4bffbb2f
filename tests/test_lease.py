"""One controller per study: a live lease refuses, a stale one is taken over."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from hpo.errors import LeaseError
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


def test_release_removes_only_our_own_lease(volume: Volume) -> None:
    clock = FakeClock()
    lease = _lease(volume, clock)
    lease.acquire()
    lease.release()
    assert not volume.exists("hpo/demo/lease.json")
