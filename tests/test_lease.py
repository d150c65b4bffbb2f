"""One controller per study: a live lease refuses, a stale one is taken over, the journal fences the rest."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hooked_volume import HookedVolume

from hpo.errors import JournalFencedError, LeaseError
from hpo.journal import StudyStorage, open_storage
from hpo.lease import MAX_LEASE_AHEAD, Lease, parse_holder
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


# ---------------------------------------------------------------------- a controller on a pod of its own


def _pod_lease(volume: Volume, clock: FakeClock, pod: str | None) -> Lease:
    return Lease(volume, "demo", ttl=60, clock=clock, sleep=lambda _: None, pod=pod)


def test_a_lease_names_the_pod_and_when_its_holder_took_it_kept_across_renewals(volume: Volume) -> None:
    clock = FakeClock()
    lease = _pod_lease(volume, clock, "abc123xyz")
    lease.acquire()
    started = clock.now
    clock.now += 25
    lease.renew()
    raw = volume.read_json("hpo/demo/lease.json")
    assert raw["pod"] == "abc123xyz" and raw["started_at"] == started and raw["expires_at"] == started + 85
    holder = lease.current()
    assert holder is not None and holder.pod == "abc123xyz" and holder.started_at == started
    assert holder.describe() == "the remote controller on pod abc123xyz"
    assert holder.uptime(clock.now) == 25
    assert parse_holder({**raw, "pod": None}, clock.now, 60).describe() == f"pid {os.getpid()} on {socket.gethostname()}"


def test_a_lease_of_an_older_controller_without_pod_or_start_still_parses() -> None:
    holder = parse_holder({"id": "old", "host": "laptop", "pid": 77, "expires_at": 1_000_060.0}, 1_000_000.0, 60)
    assert (holder.pod, holder.started_at, holder.uptime(1_000_000.0)) == (None, None, None)
    assert holder.describe() == "pid 77 on laptop"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"pod": ""}, "'pod'"),
        ({"pod": "a b"}, "'pod'"),
        ({"pod": "x" * 65}, "'pod'"),
        ({"pod": 12345}, "'pod'"),
        ({"pod": "\x1b[31mred"}, "'pod'"),
        ({"started_at": float("nan")}, "'started_at' must be a finite number"),
        ({"started_at": "yesterday"}, "'started_at' must be a finite number"),
        ({"started_at": True}, "'started_at' must be a finite number"),
        ({"started_at": 1_000_000.0 + MAX_LEASE_AHEAD + 3600}, "in the future"),
    ],
)
def test_a_lease_claiming_a_bad_pod_or_start_is_invalid(changes: dict[str, object], reason: str) -> None:
    raw = {"id": "x", "host": "h", "pid": 1, "expires_at": 1_000_060.0, **changes}
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_holder(raw, 1_000_000.0, 60)


def test_an_invalid_pod_lease_is_stale_with_a_warning(volume: Volume, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    bad = {"id": "x", "host": "h", "pid": 1, "expires_at": clock.now + 600, "pod": "no such pod!"}
    volume.write_json("hpo/demo/lease.json", bad)
    lease = _lease(volume, clock)
    with caplog.at_level(logging.WARNING):
        lease.acquire()
    assert lease.held and any("'pod'" in r.getMessage() for r in caplog.records)


def test_a_lease_of_this_very_pod_is_stale_at_once_a_restarted_container(volume: Volume) -> None:
    clock = FakeClock()
    old = _pod_lease(volume, clock, "abc123xyz")
    old.acquire()  # the pod's first container; RunPod restarts it in place, the process is gone
    clock.now += 5
    new = _pod_lease(volume, clock, "abc123xyz")
    new.acquire()  # the lease is live for 55 s more, and names this very pod: taken over
    assert new.held and volume.read_json("hpo/demo/lease.json")["id"] == new.id
    assert volume.read_json("hpo/demo/lease.json")["started_at"] == clock.now
    clock.now += 20  # the old process's renewal, were it alive, is due
    with pytest.raises(LeaseError, match="taken over by the remote controller on pod abc123xyz"):
        old.renew()


def test_a_live_pod_lease_refuses_others_naming_the_pod_and_the_command_that_stops_it(volume: Volume) -> None:
    clock = FakeClock()
    _pod_lease(volume, clock, "abc123xyz").acquire()
    for pod in ("otherpod42", None):  # another pod's controller, or one on a laptop
        with pytest.raises(LeaseError) as info:
            _pod_lease(volume, clock, pod).acquire()
        said = str(info.value)
        assert "the remote controller on pod abc123xyz" in said and "`hpo stop --study demo` stops it" in said
        assert "lease expires in 1m 0s" in said and "delete hpo/demo/lease.json" in said
        assert "\n" not in said
    assert volume.read_json("hpo/demo/lease.json")["pod"] == "abc123xyz"  # left alone


def test_a_live_local_lease_still_says_stop_it_first(volume: Volume) -> None:
    clock = FakeClock()
    _lease(volume, clock).acquire()
    with pytest.raises(LeaseError) as info:
        _pod_lease(volume, clock, "abc123xyz").acquire()  # a pod's controller finds the laptop's
    assert "stop it first" in str(info.value) and "hpo stop" not in str(info.value)
    assert f"pid {os.getpid()} on {socket.gethostname()}" in str(info.value)


def test_a_lease_refuses_to_record_what_is_no_pod_id(volume: Volume) -> None:
    with pytest.raises(ValueError, match="not a pod id"):
        _pod_lease(volume, FakeClock(), "pod with spaces")
