"""Billed seconds per attempt: the meter on its own, and a RunPod study whose costs match the fake's bill."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from optuna.trial import TrialState
from studyfiles import (
    count_events,
    fake_runpod_for,
    hpo_in_process,
    load_trials,
    make_workspace,
    study_config,
    study_volume,
    wait_for,
)

from hpo.backends import AttemptRef, Billing, WorkerHandle
from hpo.backends.runpod import pod_name, worker_pod_name
from hpo.controller import build_controller
from hpo.cost import AttemptBill, CostMeter, load_bills, study_overhead, total, trial_costs
from hpo.fake_runpod import FakeRunPod
from hpo.journal import open_storage
from hpo.layout import StudyLayout
from hpo.records import read_launch

API_KEY = "rpa_cost_test_key"
A5000 = "NVIDIA RTX A5000"


def _handle(trial: int, attempt: int, worker: str, rate: float = 0.36, started: float = 1000.0, gpus: int = 2) -> WorkerHandle:
    return WorkerHandle(AttemptRef(trial, attempt), worker, billing=Billing(rate, gpus, A5000, started))


# ---------------------------------------------------------------------- the meter


def test_the_meter_bills_from_creation_to_the_poll_that_finds_the_worker_gone() -> None:
    meter = CostMeter()
    a = _handle(0, 0, "pod-a")
    assert meter.sweep({a.ref: a}, now=1010.0) == {0}
    assert meter.sweep({a.ref: a}, now=1020.0) == set()  # nothing new to save
    assert meter.billing_rate() == (pytest.approx(0.36), 2)
    assert meter.spent_usd(1100.0) == pytest.approx(0.36 * 100 / 3600)  # still billing: up to now
    assert meter.sweep({}, now=1030.0) == {0}  # gone: ended at the poll that saw it gone
    [bill] = meter.bills(0)
    assert (bill.start, bill.end, bill.seen) == (1000.0, 1030.0, 1020.0)
    assert bill.seconds(9999.0) == 30.0 and bill.gpu_seconds(9999.0) == 60.0
    assert meter.billing_rate() == (0.0, 0)


def test_a_terminated_worker_ends_at_once_and_one_listed_again_bills_on() -> None:
    meter = CostMeter()
    a = _handle(3, 1, "pod-a", started=500.0)
    meter.observe(a.ref, a, now=510.0)
    assert meter.ended(a.ref, now=520.0) and not meter.ended(a.ref, now=530.0)
    assert meter.sweep({a.ref: a}, now=540.0) == {3}  # a terminate that did not take: open again
    meter.sweep({}, now=560.0)
    assert meter.trial_cost(3, 0.0).seconds == 60.0


def test_every_worker_of_an_attempt_is_paid_for() -> None:
    # RunPod can make a pod and answer 500: should an attempt ever have had two, both cost money.
    meter = CostMeter()
    first, second = _handle(1, 0, "pod-a", started=0.0), _handle(1, 0, "pod-b", started=10.0)
    meter.sweep({first.ref: first}, now=20.0)
    meter.sweep({second.ref: second}, now=40.0)
    meter.sweep({}, now=50.0)
    assert [b.worker for b in meter.bills(1)] == ["pod-a", "pod-b"]
    assert meter.trial_cost(1, 0.0).seconds == 40.0 + 40.0


def test_the_bill_replaces_the_estimate_of_ended_attempts_only() -> None:
    meter = CostMeter()
    done, running = _handle(0, 0, "pod-a"), _handle(1, 0, "pod-b")
    meter.sweep({done.ref: done, running.ref: running}, now=1100.0)
    meter.sweep({running.ref: running}, now=1200.0)
    assert meter.reconcile({"pod-a": 0.0180, "pod-b": 0.5}) == {0}
    [bill] = meter.bills(0)
    assert bill.billed_usd == 0.0180 and bill.seconds(0.0) == pytest.approx(180.0)  # 0.018 $ at 0.36 $/h
    assert meter.bills(1)[0].billed_usd is None  # still billing: its bill is not final
    assert meter.trial_cost(0, 0.0).source == "billing" and meter.trial_cost(1, 1200.0).source == "estimate"


def test_records_round_trip_through_json_and_sum_per_trial() -> None:
    bills = [
        AttemptBill(0, "pod-a", 0.28, 1, A5000, 0.0, 36.0, 30.0, billed_usd=0.0028, cpu_seconds=12.5),
        AttemptBill(1, "pod-b", 0.25, 1, "NVIDIA RTX A4000", 100.0, None, 150.0),
    ]
    again = [AttemptBill.from_json(b.to_json()) for b in bills]
    assert again == bills
    cost = total(again, now=172.0)
    assert cost.usd == pytest.approx(0.0028 + 0.25 * 72 / 3600)
    assert cost.seconds == pytest.approx(36.0 + 72.0)
    assert cost.gpu_type == "NVIDIA RTX A5000, NVIDIA RTX A4000"
    assert cost.source == "mixed" and cost.billing and cost.cpu_seconds == 12.5
    free = total([AttemptBill(0, "123@1.0", 0.0, 0, None, 0.0, 5.0, 5.0)], now=9.0)
    assert free.source == "free" and free.usd == 0.0 and free.gpu_seconds == 0.0
    assert load_bills({"hpo:cost:7": [b.to_json() for b in bills], "hpo:cost:x": [], "other": 1}) == {7: bills}


# ---------------------------------------------------------------------- a study on the fake


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tmp_path / "project"


@pytest.fixture
def fake(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod]:
    with fake_runpod_for(project, tmp_path, monkeypatch, API_KEY) as server:
        yield server


def fake_wall_clock(fake: FakeRunPod):  # type: ignore[no-untyped-def]
    """Epoch seconds on the fake's clock: the one its pods' creation times and its bill are on."""
    return lambda: fake.clock.to_datetime(fake.now()).timestamp()


@pytest.mark.slow
def test_costs_on_the_fake_match_its_bill_to_the_second(fake: FakeRunPod, project: Path, tmp_path: Path) -> None:
    """One pod per attempt (``workers.reuse: false``): each attempt's record is its pod's bill."""
    studies = make_workspace(project, pace=0.1, max_step=6, trials=3, concurrency=2, reuse=False)
    config = study_config(studies, "pods")
    volume, layout = study_volume(config), StudyLayout(config.name)
    controller = build_controller(config, cache_dir=tmp_path / "cache", wall_clock=fake_wall_clock(fake))
    thread = threading.Thread(target=controller.run)
    thread.start()
    try:  # a preemption: trial 0 runs on two pods, both billed
        wait_for(lambda: count_events(volume, layout.events(0, 0), "checkpoint") >= 2, 60, "2 checkpoints")
        fake.preempt(next(p.id for p in fake.pods() if p.name == pod_name("pods", AttemptRef(0, 0))))
    finally:
        thread.join(timeout=120)
    assert not thread.is_alive()

    pods = {p.id: p for p in fake.pods(include_terminated=True)}
    assert len(pods) == 4
    storage = open_storage(volume, config.name, cache_dir=tmp_path / "reader")
    study = storage.load_study(config.name)
    assert study is not None
    records = load_bills(storage.optuna.get_study_system_attrs(study._study_id))
    assert sorted(b.worker for bills in records.values() for b in bills) == sorted(pods)
    for trial, bills in records.items():
        for bill in bills:
            pod = pods[bill.worker]
            assert pod.name == pod_name("pods", AttemptRef(trial, bill.attempt))
            assert bill.billed_usd is not None  # reconciled with GET /v2/billing/pods at the end of the run
            assert abs(bill.seconds(0.0) - pod.billed_seconds) < 1.0  # to the second
            assert bill.usd(0.0) == pytest.approx(pod.billed_usd, rel=1e-9)
            assert bill.usd_per_hr == pytest.approx(pod.cost_per_hr) and bill.gpu_type == pod.gpu_type
            assert bill.start == pytest.approx(fake.clock.to_datetime(pod.created_at).timestamp(), abs=1e-3)
    assert [b.attempt for b in records[0]] == [0, 1]

    trials = load_trials(config, tmp_path / "reader2")
    costs = trial_costs(storage.optuna, study._study_id, trials, now=0.0)
    bill = requests.get(f"{fake.url}/v2/billing/pods", params={"bucketSize": "hour"},
                        headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).json()
    assert sum(c.usd for c in costs.values()) == pytest.approx(bill["metadata"]["totals"]["totalAmount"], rel=1e-9)
    for trial in trials:
        billed = sum(p.billed_usd for p in pods.values() if p.name.startswith(f"hpo-pods-{trial.number}-"))
        assert costs[trial.number].usd == pytest.approx(billed, rel=1e-9)
        assert costs[trial.number].gpu_seconds == pytest.approx(
            sum(p.billed_seconds for p in pods.values() if p.name.startswith(f"hpo-pods-{trial.number}-")), abs=1.0
        )
        # The trial's own attributes (the dashboard's) hold its cost as of its end, within a few polls.
        attrs = trial.user_attrs
        assert attrs["gpu_type"] == A5000 and attrs["attempts"] == (2 if trial.number == 0 else 1)
        assert attrs["cost_usd"] > 0 and abs(attrs["gpu_seconds"] - costs[trial.number].gpu_seconds) < 60.0

    # hpo status adds it up the same way.
    status = hpo_in_process("status", "--study", "pods", "--studies", str(studies), "--json",
                            env={"HPO_CACHE_DIR": str(tmp_path / "status-cache")})
    assert status.returncode == 0, status.stderr
    spend = json.loads(status.stdout)["spend"]
    assert spend["usd"] == pytest.approx(sum(p.billed_usd for p in pods.values()), rel=1e-9)
    assert spend["cost_unit"] == "USD" and spend["cheapest_near_best"] is not None


@pytest.mark.slow
def test_warm_workers_costs_and_overhead_add_up_to_the_bill_to_the_cent(
    fake: FakeRunPod, project: Path, tmp_path: Path
) -> None:
    """Warm workers: each attempt's share of its worker's bill, plus the overhead records, is the whole bill."""
    studies = make_workspace(project, pace=0.1, max_step=6, trials=5, concurrency=2)
    config = study_config(studies, "pods")
    volume, layout = study_volume(config), StudyLayout(config.name)
    controller = build_controller(config, cache_dir=tmp_path / "cache")
    thread = threading.Thread(target=controller.run)
    thread.start()
    try:  # a preemption: the worker under trial 0 goes, its attempt resumes on another
        wait_for(lambda: count_events(volume, layout.events(0, 0), "checkpoint") >= 2, 60, "2 checkpoints")
        launch = read_launch(volume, layout.launch(0, 0))
        assert launch is not None and launch.worker is not None
        fake.preempt(next(p.id for p in fake.pods() if p.name == worker_pod_name("pods", launch.worker)))
    finally:
        thread.join(timeout=180)
    assert not thread.is_alive()

    pods = fake.pods(include_terminated=True)
    assert len(pods) <= 2 + 1  # a slot each, and one more for the preemption: not a pod per attempt
    storage = open_storage(volume, config.name, cache_dir=tmp_path / "reader")
    study = storage.load_study(config.name)
    assert study is not None
    trials = load_trials(config, tmp_path / "reader2")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    costs = trial_costs(storage.optuna, study._study_id, trials, now=0.0)
    overhead = study_overhead(storage.optuna, study._study_id)
    assert overhead.workers == len(pods) and overhead.seconds > 0  # provisioning at least
    bill = requests.get(f"{fake.url}/v2/billing/pods", params={"bucketSize": "hour"},
                        headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).json()
    total = bill["metadata"]["totals"]["totalAmount"]
    assert round(sum(c.usd for c in costs.values()) + overhead.usd, 2) == round(total, 2)
    assert sum(c.usd for c in costs.values()) + overhead.usd == pytest.approx(total, abs=1e-5)  # records keep 6 decimals
    assert all(c.usd > 0 for c in costs.values())


@pytest.mark.slow
def test_the_meter_runs_on_the_providers_clock_without_being_told(fake: FakeRunPod, project: Path, tmp_path: Path) -> None:
    """Issue 10 item 7: the fake bills on a clock 20x the wall clock; the meter reads it from the pods' uptimes."""
    studies = make_workspace(project, pace=0.1, max_step=6, trials=2, concurrency=2, reuse=False)
    config = study_config(studies, "pods")
    build_controller(config, cache_dir=tmp_path / "cache").run()  # no clock passed in: the default

    pods = {p.id: p for p in fake.pods(include_terminated=True)}
    storage = open_storage(study_volume(config), config.name, cache_dir=tmp_path / "reader")
    study = storage.load_study(config.name)
    assert study is not None
    bills = [b for bs in load_bills(storage.optuna.get_study_system_attrs(study._study_id)).values() for b in bs]
    assert sorted(b.worker for b in bills) == sorted(pods)
    for bill in bills:
        assert bill.end is not None
        metered = bill.end - bill.start  # the meter's own estimate, before the bill replaced it
        billed = pods[bill.worker].billed_seconds
        # On the wall clock it would be about a twentieth of the bill; a poll late at most on the fake's.
        assert 0.5 * billed <= metered <= 1.5 * billed + 60.0, (metered, billed)
