"""The controller under faults of its provider: outages, unclear creates, duplicate and stray workers, failing trials.

Issue 10, items 2, 3 and 10, driven one poll at a time over a scripted
backend (tests/controller_harness.py): no process, no real time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_harness import Seam
from optuna.trial import TrialState

from hpo.backends import AttemptRef, Billing, WorkerHandle
from hpo.controller._fleet import STRAY_GRACE
from hpo.errors import ApiUnavailableError, AuthError, JournalFencedError, LaunchUnknownError
from hpo.journal import open_storage


def _states(seam: Seam) -> list[TrialState]:
    assert seam.controller.study is not None
    return [t.state for t in seam.controller.study.get_trials(deepcopy=False)]


def _trial(seam: Seam, number: int):
    assert seam.controller.study is not None
    return seam.controller.study.get_trials(deepcopy=False)[number]


def test_an_api_outage_of_minutes_never_ends_the_run_and_reports_keep_flowing(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.controller.begin()
    seam.controller.cycle()
    seam.backend.outage = 300  # five minutes of 503s at one poll a second
    for step in range(1, 6):
        seam.reports(0, {step: 1.0 / step})
        for _ in range(60):
            seam.controller.cycle()
            seam.clock.sleep(seam.config.poll_interval)
        assert _trial(seam, 0).intermediate_values[step] == 1.0 / step  # during the outage
    assert seam.controller.lease.current().expires_at > seam.clock()  # renewed all along
    unreachable = [m for m in seam.messages if "RunPod" in m or "API unreachable" in m]
    assert any("API unreachable for 1m, retrying" in m for m in unreachable), unreachable
    assert len(unreachable) <= 6  # one line a minute, not one a poll
    assert seam.backend.launched == [AttemptRef(0, 0)]  # no launch was decided blind

    seam.write(0, {"type": "done", "value": 0.2})
    seam.backend.gone(0)
    seam.controller.cycle()  # still down: the verdict the worker wrote is taken all the same
    assert _states(seam) == [TrialState.COMPLETE]
    seam.backend.outage = 0
    seam.controller.cycle()
    assert any("reachable again after 5m" in m for m in seam.messages), seam.messages


def test_an_outage_while_a_worker_is_gone_waits_for_the_listing_before_relaunching(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.controller.begin()
    seam.controller.cycle()
    seam.backend.gone(0)  # preempted, but nobody can see it
    seam.backend.outage = 3
    for _ in range(3):
        seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0)]
    seam.controller.cycle()  # the API is back: attempt 0 is seen gone, attempt 1 resumes it
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 1)]


def test_a_controller_starting_during_an_outage_waits_for_it_to_end(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.backend.outage = 5
    seam.controller.begin()  # recovery needs one listing: it waits, renewing the lease
    assert seam.backend.listings == 6
    assert seam.controller.lease.current().expires_at > seam.clock()


def test_what_retrying_cannot_fix_still_ends_the_run(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.controller.begin()

    def refuse() -> dict[AttemptRef, WorkerHandle]:
        raise AuthError("GET /v2/pods: 401 Unauthorized (check RUNPOD_API_KEY)", status=401)

    seam.backend.list_live = refuse  # type: ignore[method-assign]
    with pytest.raises(AuthError):
        seam.controller.cycle()


@pytest.mark.parametrize("made", [True, False], ids=["the-pod-was-made", "nothing-was-made"])
def test_an_unconfirmed_create_is_never_repeated_before_a_listing_answers(tmp_path: Path, made: bool) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.backend.launch_faults.append((LaunchUnknownError("POST /v2/pods: 500, and no lookup answered"), made))
    seam.controller.begin()
    seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0)]
    seam.backend.outage = 2  # the listings fail too: still no second create
    seam.controller.cycle()
    seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0)]
    seam.controller.cycle()  # a listing answers
    expected = [AttemptRef(0, 0)] if made else [AttemptRef(0, 0), AttemptRef(0, 0)]
    assert seam.backend.launched == expected
    assert AttemptRef(0, 0) in seam.backend.alive
    seam.controller.cycle()
    assert seam.backend.launched == expected  # and never again
    assert _states(seam) == [TrialState.RUNNING]


def test_an_unreachable_api_at_launch_queues_the_trial(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.backend.launch_faults.append((ApiUnavailableError("POST /v2/pods: 429 Too Many Requests", status=429), False))
    seam.controller.begin()
    seam.controller.cycle()
    assert any("queued" in m and "API unreachable" in m for m in seam.messages), seam.messages
    seam.clock.sleep(60)
    seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0), AttemptRef(0, 0)]
    assert AttemptRef(0, 0) in seam.backend.alive


def test_a_second_worker_of_one_attempt_is_metered_and_terminated_the_oldest_goes_on(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.controller.begin()
    seam.controller.cycle()
    twin = WorkerHandle(AttemptRef(0, 0), "w-twin", billing=Billing(usd_per_hr=0.5, gpu_count=1, started_at=seam.clock()))
    seam.backend.surplus.append(twin)
    seam.clock.sleep(10)
    seam.controller.cycle()
    assert seam.backend.terminated == ["w-twin"]
    assert AttemptRef(0, 0) in seam.backend.alive  # the first one was left alone
    bills = {bill.worker: bill for bill in seam.controller.costs.meter.bills(0)}
    assert set(bills) == {"w0", "w-twin"} and bills["w-twin"].usd_per_hr == 0.5
    seam.clock.sleep(10)
    seam.controller.cycle()  # the twin is gone from the listing: its bill closes there
    assert bills["w-twin"].end is not None and bills["w-twin"].usd(seam.clock()) > 0


def test_a_worker_no_running_trial_owns_is_terminated_after_a_grace(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.controller.begin()
    seam.controller.cycle()
    seam.write(0, {"type": "done", "value": 0.5})  # finished, but its worker does not exit
    seam.controller.cycle()
    assert _states(seam) == [TrialState.COMPLETE] and seam.backend.terminated == []
    seam.clock.sleep(STRAY_GRACE)
    seam.controller.cycle()
    assert seam.backend.terminated == ["w0"]


def test_trials_failing_with_the_same_error_stop_the_launching(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=8)
    seam.controller.begin()
    seam.controller.cycle()
    for number in range(3):
        seam.write(number, {"type": "error", "message": "ModuleNotFoundError: No module named 'nope'"})
        seam.backend.gone(number)
        seam.controller.cycle()
    assert _states(seam) == [TrialState.FAIL] * 3
    assert seam.controller.launch_stopped is not None
    assert "3 trials in a row failed with the same error" in seam.controller.launch_stopped
    assert "No module named 'nope'" in seam.controller.launch_stopped
    summary = seam.controller.summary(0.0)
    assert summary.stopped == seam.controller.launch_stopped and summary.complete == 0


def test_a_success_or_another_error_restarts_the_count(tmp_path: Path) -> None:
    seam = Seam(tmp_path, trials=8)
    seam.controller.begin()
    seam.controller.cycle()
    outcomes = [
        {"type": "error", "message": "boom"},
        {"type": "error", "message": "boom"},
        {"type": "done", "value": 0.5},
        {"type": "error", "message": "boom"},
        {"type": "error", "message": "other"},
        {"type": "error", "message": "boom"},
    ]
    for number, event in enumerate(outcomes):
        seam.write(number, event)
        seam.backend.gone(number)
        seam.controller.cycle()
    assert seam.controller.launch_stopped is None
    assert len(seam.backend.launched) == 7


def test_an_interrupted_attempt_is_resumed_counted_and_its_cause_kept(tmp_path: Path) -> None:
    """Issue 10 item 5: a volume fault in a worker ends the attempt as retryable, never as the trial's failure."""
    seam = Seam(tmp_path, trials=1, max_attempts=2)
    seam.controller.begin()
    seam.controller.cycle()
    cause = "volume: save_checkpoint at step 2: [Errno 28] No space left on device"
    seam.reports(0, {1: 0.5})
    seam.write(0, {"type": "interrupted", "cause": cause})
    seam.backend.gone(0)
    seam.controller.cycle()
    trial = _trial(seam, 0)
    assert trial.state == TrialState.RUNNING and seam.backend.launched[-1] == AttemptRef(0, 1)
    assert trial.user_attrs["interruption"] == f"attempt 0: {cause}"
    assert trial.user_attrs.get("preemptions", 0) == 0  # no preemption: the cause is known
    assert any("interrupted" in m and "No space left" in m for m in seam.messages)

    seam.write(0, {"type": "interrupted", "cause": cause}, attempt=1)  # it happens again: out of attempts
    seam.backend.gone(0, attempt=1)
    seam.controller.cycle()
    trial = _trial(seam, 0)
    assert trial.state == TrialState.FAIL
    assert "No space left on device" in trial.user_attrs["error"] and "max_attempts = 2" in trial.user_attrs["error"]


def test_a_controller_superseded_by_a_newer_epoch_stops_before_acting(tmp_path: Path) -> None:
    """Issue 10 item 4: two controllers (one paused through a lease race) never both drive the study."""
    seam = Seam(tmp_path, trials=3, concurrency=1)
    seam.controller.begin()
    seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0)]
    # A second controller took the study while this one was paused: its journal has a newer epoch.
    open_storage(seam.volume, "seam", writer=True, cache_dir=tmp_path / "cache-newer")
    seam.write(0, {"type": "done", "value": 0.5})
    seam.backend.gone(0)
    with pytest.raises(JournalFencedError):
        seam.controller.cycle()
    assert seam.backend.launched == [AttemptRef(0, 0)]  # trial 1 was never launched by the stale controller


@pytest.mark.parametrize("junk", [b"[1]", b"{not json", b'{"study": "seam", "trial": 0, "params": {"x": 9}}'])
def test_a_junk_spec_found_on_adoption_is_written_again(tmp_path: Path, junk: bytes) -> None:
    seam = Seam(tmp_path, trials=1)
    seam.controller.begin()
    seam.controller.cycle()
    good = seam.volume.read_json(seam.layout.spec(0))
    seam.volume.write_bytes(seam.layout.spec(0), junk)  # anyone with the volume may write it
    seam.crash_and_restart()
    assert seam.volume.read_json(seam.layout.spec(0)) == good
