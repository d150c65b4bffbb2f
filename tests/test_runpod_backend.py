"""The RunPod backend against the fake over HTTP: one pod per attempt, duplicates surfaced, RunPod's clock read."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_runpod_support.processes import live_pod_processes, wait_no_pod_processes
from studyfiles import wait_for

from hpo.backends import AttemptRef
from hpo.backends.runpod import (
    Pod,
    PodRequest,
    RunPodApi,
    RunPodBackend,
    job_pod_name,
    parse_job_pod_name,
    parse_pod_name,
    parse_worker_pod_name,
    pod_env,
    pod_name,
    spot_deadline_seconds,
    worker_pod_env,
    worker_pod_name,
)
from hpo.backends.runpod._backend import SPOT_DEADLINE_MAX_S
from hpo.config import RunPodCompute, RunPodVolume
from hpo.errors import BackendError, CapacityError, ConfigError, LaunchUnknownError, RequestRejectedError
from hpo.fake_runpod import FakeRunPod
from hpo.volume import DirectoryVolume

KEY = "rpa_backend_test_key"
A5000 = "NVIDIA RTX A5000"
A4000 = "NVIDIA RTX A4000"
VOLUME = "vol0123456"
STUDY = "dup"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRunPod]:
    (tmp_path / "vol").mkdir()
    with FakeRunPod(
        volumes={VOLUME: tmp_path / "vol"}, api_keys={KEY}, time_scale=20.0, workdir=tmp_path / "fake",
        pod_command=["sleep", "600"],
    ) as server:
        yield server


@pytest.fixture
def api(fake: FakeRunPod) -> Iterator[RunPodApi]:
    client = RunPodApi(KEY, rest_url=fake.url, graphql_base=fake.url, sleep=lambda _: None)
    yield client
    client.close()


@pytest.fixture
def backend(fake: FakeRunPod, api: RunPodApi, tmp_path: Path) -> Iterator[RunPodBackend]:
    compute = RunPodCompute(image="ghcr.io/example/trial:1", gpu_types=(A5000, A4000), spot=False)
    volume_config = RunPodVolume(id=VOLUME, data_center="EU-RO-1")
    made = RunPodBackend(STUDY, compute, volume_config, DirectoryVolume(tmp_path / "vol"), api)
    yield made
    for pod in api.list_pods():
        api.terminate_pod(pod.id)


def _made(fake: FakeRunPod, name: str) -> list[str]:
    """The GPU types of every pod the fake ever made under ``name`` (one per create that went through)."""
    return [view.gpu_type for view in fake.pods(include_terminated=True) if view.name == name]


def test_a_launch_that_may_have_made_its_pod_stops_at_once_without_trying_the_next_type(
    backend: RunPodBackend, fake: FakeRunPod
) -> None:
    ref = AttemptRef(0, 0)
    fake.inject_fault("create_then_500", times=1)
    fake.inject_fault("list_error", times=5)  # every lookup by name of this launch fails
    with pytest.raises(LaunchUnknownError):
        backend.launch(ref)
    assert _made(fake, pod_name(STUDY, ref)) == [A5000]  # not a second pod of the next type
    assert set(backend.list_live()) == {ref}  # the next listing that answers finds it


def test_two_live_pods_of_one_attempt_the_oldest_runs_it_the_other_is_an_extra(
    backend: RunPodBackend, api: RunPodApi, fake: FakeRunPod
) -> None:
    ref = AttemptRef(3, 1)
    first = backend.launch(ref)
    assert backend.extras() == []
    # A second pod with the same name, as a create-then-500 retried blindly would leave.
    second = api.create_pod(
        PodRequest(
            name=pod_name(STUDY, ref), image="ghcr.io/example/trial:1", gpu_type=A4000,
            data_center_ids=("EU-RO-1",), volume_id=VOLUME, env=pod_env(STUDY, ref, "/workspace"),
        )
    )
    assert fake.pod(second.id).created_at > fake.pod(first.id).created_at
    live = backend.list_live()
    assert set(live) == {ref} and live[ref].id == first.id
    extras = backend.extras()
    assert [(h.ref, h.id) for h in extras] == [(ref, second.id)]
    billing = extras[0].billing
    assert billing is not None and billing.usd_per_hr == pytest.approx(0.25) and billing.started_at is not None
    backend.terminate(extras[0])
    live = backend.list_live()
    assert live[ref].id == first.id and backend.extras() == []


def _fake_epoch_now(fake: FakeRunPod) -> float:
    return fake.clock.to_datetime(fake.now()).timestamp()


def test_provider_now_follows_runpods_clock_not_the_wall_clock(backend: RunPodBackend, fake: FakeRunPod) -> None:
    assert backend.provider_now() is None  # nothing listed yet: use the wall clock
    backend.list_live()
    assert backend.provider_now() is None  # no pod reports an uptime
    ref = AttemptRef(0, 0)
    backend.launch(ref)
    wait_for(lambda: backend.list_live() and backend.provider_now() is not None, 30, "a running pod's uptime")
    # The fake runs 20x faster than the wall: jump it an hour on and list again.
    fake.advance(3600)
    backend.list_live()
    fake_now = _fake_epoch_now(fake)
    provider = backend.provider_now()
    assert provider is not None
    # Within what a listing may lag (the uptime's whole seconds, the fake's ticks, this test's own pace at 20x).
    assert provider == pytest.approx(fake_now, abs=30)
    assert provider - time.time() > 3000  # the wall clock would have counted the hour as nothing
    readings = [backend.provider_now() for _ in range(5)]
    assert readings == sorted(readings) and readings[0] >= provider  # type: ignore[operator]  # never backwards


# -- issue 12: first contact ---------------------------------------------------------------

DC = "EU-RO-1"
IMAGE = "ghcr.io/example/trial:1"


def _backend(
    fake: FakeRunPod, tmp_path: Path, api: RunPodApi | None = None, *, spot_deadline_s: float | None = None,
    **compute: object,
) -> RunPodBackend:
    """A backend of study ``STUDY`` on ``fake`` with ``compute`` over the defaults (A5000 then A4000, spot)."""
    fields: dict[str, object] = {"image": IMAGE, "gpu_types": (A5000, A4000), "spot": True}
    fields.update(compute)
    client = api or RunPodApi(KEY, rest_url=fake.url, graphql_base=fake.url, sleep=lambda _: None)
    return RunPodBackend(
        STUDY, RunPodCompute(**fields), RunPodVolume(id=VOLUME, data_center=DC), DirectoryVolume(tmp_path / "vol"),
        client, spot_deadline_s=spot_deadline_s,
    )


def _launch_json(tmp_path: Path, ref: AttemptRef) -> dict:  # type: ignore[type-arg]
    from hpo.layout import StudyLayout

    return DirectoryVolume(tmp_path / "vol").read_json(StudyLayout(STUDY).launch(ref.trial, ref.attempt))


@pytest.fixture
def market(tmp_path: Path) -> Iterator[FakeRunPod]:
    """A fake with registry credentials and a minimum bid that moves over (fake) time."""
    (tmp_path / "vol").mkdir(exist_ok=True)
    with FakeRunPod(
        volumes={VOLUME: tmp_path / "vol"}, api_keys={KEY}, time_scale=1.0, workdir=tmp_path / "fake",
        pod_command=["sleep", "600"], registries={"ghcr-private": "reg7f3k2m9q"}, bid_floor_swing=0.3,
        bid_floor_period_seconds=3600.0, outbid_preemption=False,
    ) as server:
        yield server


def test_registry_auth_by_name_is_resolved_once_and_sent_on_both_paths(market: FakeRunPod, tmp_path: Path) -> None:
    backend = _backend(market, tmp_path, registry_auth="ghcr-private", spot="prefer")
    spot = backend.launch(AttemptRef(0, 0))
    market.set_capacity(A5000, 0)
    market.set_capacity(A4000, 0)
    market.retire_graphql()  # the next launch goes on-demand (v2)
    with pytest.raises(CapacityError):
        backend.launch(AttemptRef(1, 0))
    market.set_capacity(A4000, None)
    on_demand = backend.launch(AttemptRef(2, 0))
    assert market.pod(spot.id).spot and not market.pod(on_demand.id).spot
    assert market.pod(spot.id).request.registry == "reg7f3k2m9q"  # GraphQL containerRegistryAuthId
    assert market.pod(on_demand.id).request.registry == "reg7f3k2m9q"  # v2 registry


def test_registry_auth_given_as_an_id_is_sent_as_is(market: FakeRunPod, tmp_path: Path) -> None:
    handle = _backend(market, tmp_path, registry_auth="reg7f3k2m9q", spot=False).launch(AttemptRef(0, 0))
    assert market.pod(handle.id).request.registry == "reg7f3k2m9q"


def test_an_unknown_registry_auth_is_one_line_naming_study_key_and_known_names(
    market: FakeRunPod, tmp_path: Path
) -> None:
    backend = _backend(market, tmp_path, registry_auth="ghcr-privat")
    with pytest.raises(ConfigError) as caught:
        backend.launch(AttemptRef(0, 0))
    message = str(caught.value)
    assert "\n" not in message and repr(STUDY) in message and "compute.registry_auth" in message
    assert "ghcr-private" in message and market.pods() == []


def test_the_bid_follows_compute_bid_per_data_center_and_is_recorded(market: FakeRunPod, tmp_path: Path) -> None:
    floor = market.minimum_bid(A5000, DC)
    assert floor is not None
    listed = 0.14  # the fake's published secureSpotPrice for the A5000
    market_rate = max(listed, floor)
    cases: list[tuple[object, float]] = [("market", market_rate), ("floor", floor), (round(floor + 0.001, 3), None)]  # type: ignore[list-item]
    for trial, (policy, expected) in enumerate(cases):
        backend = _backend(market, tmp_path, bid=policy, gpu_types=(A5000,))
        handle = backend.launch(AttemptRef(trial, 0))
        bid = handle.detail["bid_per_gpu"]
        want = expected if expected is not None else min(float(policy), market_rate)  # type: ignore[arg-type]
        assert bid == pytest.approx(want, abs=1e-3), policy
        assert _launch_json(tmp_path, AttemptRef(trial, 0))["bid_per_gpu"] == pytest.approx(bid)
        assert market.pod(handle.id).request.bid_per_gpu == pytest.approx(bid, abs=1e-4)
        assert market.pod(handle.id).request.data_center_ids == (DC,)  # spot: dataCenterId, always


def test_a_bid_cap_below_the_floor_skips_the_candidate(market: FakeRunPod, tmp_path: Path) -> None:
    floor = market.minimum_bid(A5000, DC)
    assert floor is not None
    backend = _backend(market, tmp_path, bid=round(floor / 2, 3), gpu_types=(A5000,))
    with pytest.raises(CapacityError, match="above compute.bid"):
        backend.launch(AttemptRef(0, 0))
    assert market.pods() == []
    prefer = _backend(market, tmp_path, bid=round(floor / 2, 3), gpu_types=(A5000,), spot="prefer")
    handle = prefer.launch(AttemptRef(1, 0))
    assert not market.pod(handle.id).spot and market.pod(handle.id).request.data_center_ids == (DC,)


class _FloorRisesAfterPricing(RunPodApi):
    """A real client of the fake whose first price quote goes stale: the fake's clock jumps to a higher floor.

    Models the outbid race (the floor moves between the quote and the create)
    with the fake's own moving floor; every call still goes over HTTP.
    """

    def __init__(self, fake: FakeRunPod) -> None:
        super().__init__(KEY, rest_url=fake.url, graphql_base=fake.url, sleep=lambda _: None)
        self.fake = fake
        self.jumped = False

    def spot_price(self, gpu_type: str, *, gpu_count: int = 1, data_center: str | None = None):  # type: ignore[no-untyped-def]
        quote = super().spot_price(gpu_type, gpu_count=gpu_count, data_center=data_center)
        if not self.jumped:
            self.jumped = True
            now = self.fake.now()
            floor_at = self.fake.account.bid_floor.minimum_bid
            from hpo.fake_runpod._catalog import GPU_TYPES

            later = next(
                step for step in range(60, 3600, 60)
                if floor_at(GPU_TYPES[gpu_type], "SECURE", data_center, now + step) > (quote.minimum_bid or 0) + 0.01
            )
            self.fake.advance(later)
        return quote


def test_an_unrecognised_spot_error_skips_to_the_next_gpu_type(
    market: FakeRunPod, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = _backend(market, tmp_path, api=_FloorRisesAfterPricing(market), bid="floor")
    with caplog.at_level("WARNING"):
        handle = backend.launch(AttemptRef(0, 0))
    assert market.pod(handle.id).gpu_type == A4000 and market.pod(handle.id).spot
    assert any("minimum bid" in r.getMessage() and A5000 in r.getMessage() for r in caplog.records)


def test_an_unrecognised_spot_error_falls_back_to_on_demand_under_prefer(market: FakeRunPod, tmp_path: Path) -> None:
    backend = _backend(market, tmp_path, api=_FloorRisesAfterPricing(market), bid="floor", gpu_types=(A5000,),
                       spot="prefer")
    handle = backend.launch(AttemptRef(0, 0))
    assert market.pod(handle.id).gpu_type == A5000 and not market.pod(handle.id).spot


def test_when_every_candidate_fails_for_unknown_reasons_the_trial_is_queued_with_runpods_texts(
    market: FakeRunPod, tmp_path: Path
) -> None:
    backend = _backend(market, tmp_path, api=_FloorRisesAfterPricing(market), bid="floor", gpu_types=(A5000,))
    with pytest.raises(CapacityError, match="minimum bid"):
        backend.launch(AttemptRef(0, 0))


def test_a_spot_error_every_candidate_would_meet_stops_the_study(market: FakeRunPod, tmp_path: Path) -> None:
    backend = _backend(market, tmp_path, image="ghcr.io/Example/Trial:1")  # Docker refs are lowercase
    with pytest.raises(RequestRejectedError, match=rf"{STUDY}.*image"):
        backend.launch(AttemptRef(0, 0))
    assert market.pods() == []


def test_placement_follows_the_volume_on_demand(market: FakeRunPod, tmp_path: Path) -> None:
    handle = _backend(market, tmp_path, spot=False).launch(AttemptRef(0, 0))
    assert market.pod(handle.id).request.data_center_ids == (DC,)  # v2 dataCenterIds, derived from the volume


def test_spot_creates_carry_runpods_own_deadline(market: FakeRunPod, tmp_path: Path) -> None:
    backend = _backend(market, tmp_path, spot_deadline_s=5400.0)
    handle = backend.launch(AttemptRef(0, 0))
    deadline = market.pod(handle.id).request.terminate_after
    assert deadline is not None
    expected = market.clock.to_datetime(market.now()).timestamp() + 5400.0
    assert deadline.timestamp() == pytest.approx(expected, abs=120)
    on_demand = _backend(market, tmp_path, spot=False, spot_deadline_s=5400.0).launch(AttemptRef(1, 0))
    assert market.pod(on_demand.id).request.terminate_after is None  # v2 has no such field


def test_spot_deadline_formula() -> None:
    assert spot_deadline_seconds(3600.0, 100) == 3600.0 + 1800.0
    assert spot_deadline_seconds(None, 12) == 6 * 3600.0 + 12 * 600.0
    assert spot_deadline_seconds(None, 10_000) == 7 * 24 * 3600.0


def test_graphql_gone_spot_prefer_goes_on_demand_with_one_warning(
    market: FakeRunPod, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    market.retire_graphql()
    backend = _backend(market, tmp_path, spot="prefer")
    with caplog.at_level("WARNING"):
        first = backend.launch(AttemptRef(0, 0))
        second = backend.launch(AttemptRef(1, 0))
    assert not market.pod(first.id).spot and not market.pod(second.id).spot
    assert len([r for r in caplog.records if "GraphQL" in r.getMessage()]) == 1


def test_graphql_gone_spot_true_says_why_it_cannot(market: FakeRunPod, tmp_path: Path) -> None:
    market.retire_graphql()
    backend = _backend(market, tmp_path, spot=True)
    with pytest.raises(BackendError) as caught:
        backend.launch(AttemptRef(0, 0))
    message = str(caught.value)
    assert "\n" not in message and "GraphQL" in message and "compute.spot" in message
    assert not isinstance(caught.value, CapacityError) and market.pods() == []


# -- warm workers (issue 17) ---------------------------------------------------------------


class _CountingApi(RunPodApi):
    """The client, counting its ``GET /v2/pods`` (one per ``list_pods``)."""

    listings = 0

    def list_pods(self) -> list[Pod]:
        self.listings += 1
        return super().list_pods()


class _Clock:
    """The backend's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _counting(fake: FakeRunPod) -> _CountingApi:
    return _CountingApi(KEY, rest_url=fake.url, graphql_base=fake.url, sleep=lambda _: None)


def test_worker_pods_are_named_by_index_and_parsed_apart_from_attempts_and_jobs() -> None:
    assert worker_pod_name("dup", 7) == "hpo-dup-w7"
    assert parse_worker_pod_name("dup", "hpo-dup-w7") == 7
    for other in ("hpo-dup-7-0", "hpojob-dup-w7", "hpo-dup2-w7", "hpo-dup-w7-1", "hpo-dup-w", "hpo-dup-wx"):
        assert parse_worker_pod_name("dup", other) is None, other
    assert parse_pod_name("dup", "hpo-dup-w7") is None and parse_job_pod_name("dup", "hpo-dup-w7") is None


def test_a_worker_pod_is_created_as_a_trial_pod_with_the_worker_env_and_recorded(
    market: FakeRunPod, tmp_path: Path
) -> None:
    backend = _backend(market, tmp_path, registry_auth="ghcr-private", spot_deadline_s=5400.0)
    assert backend.supports_workers
    worker = backend.launch_worker(4, {"HPO_WORKER_IDLE_LIMIT": "120"})
    view = market.pod(worker.id)
    assert view.name == "hpo-dup-w4" and view.spot and view.gpu_type == A5000  # spot first, the first GPU type
    assert view.env == {
        "HPO_STUDY": STUDY, "HPO_VOLUME": "/workspace", "HPO_WORKER": "4", "HPO_WORKER_IDLE_LIMIT": "120",
    }  # fmt: skip
    assert view.request.data_center_ids == (DC,) and view.registry == "reg7f3k2m9q"
    deadline = view.request.terminate_after  # long-lived: the longest deadline, not one trial's
    assert deadline is not None
    expected = market.clock.to_datetime(market.now()).timestamp() + SPOT_DEADLINE_MAX_S
    assert deadline.timestamp() == pytest.approx(expected, abs=120)
    assert worker.index == 4 and worker.detail["spot"] is True and worker.detail["bid_per_gpu"] > 0
    assert worker.billing is not None and worker.billing.usd_per_hr == pytest.approx(view.cost_per_hr)
    record = DirectoryVolume(tmp_path / "vol").read_json(f"hpo/{STUDY}/workers/w4/launch.json")
    assert record["pod_id"] == worker.id and record["spot"] is True and record["pod_name"] == "hpo-dup-w4"
    on_demand = _backend(market, tmp_path, spot=False, spot_deadline_s=5400.0).launch_worker(5, {})
    assert not market.pod(on_demand.id).spot and market.pod(on_demand.id).request.terminate_after is None


def test_a_worker_env_may_not_name_an_attempt_or_change_whose_worker_it_is(backend: RunPodBackend) -> None:
    for env in ({"HPO_TRIAL": "1"}, {"HPO_ATTEMPT": "0"}, {"HPO_STUDY": "other"}, {"HPO_WORKER": "9"}):
        with pytest.raises(BackendError, match=r"worker 2: its environment may not"):
            backend.launch_worker(2, env)
    assert backend.list_workers() == {}


def test_list_live_and_list_workers_keep_to_their_own_pods(
    backend: RunPodBackend, api: RunPodApi, fake: FakeRunPod
) -> None:
    ref = AttemptRef(0, 0)
    attempt = backend.launch(ref)
    worker = backend.launch_worker(0, {})
    job = api.create_pod(
        PodRequest(
            name=job_pod_name(STUDY, "j" + "0" * 11), image=IMAGE, gpu_type=A4000, data_center_ids=(DC,),
            volume_id=VOLUME,
        )
    )  # fmt: skip
    assert {r: h.id for r, h in backend.list_live().items()} == {ref: attempt.id}
    assert {i: w.id for i, w in backend.list_workers().items()} == {0: worker.id}
    assert job.id not in {w.id for w in backend.worker_extras()}


def test_one_get_pods_per_poll_when_list_live_and_list_workers_are_both_called(
    fake: FakeRunPod, tmp_path: Path
) -> None:
    api, clock = _counting(fake), _Clock()
    compute = RunPodCompute(image=IMAGE, gpu_types=(A5000, A4000), spot=False)
    backend = RunPodBackend(
        STUDY, compute, RunPodVolume(id=VOLUME, data_center=DC), DirectoryVolume(tmp_path / "vol"), api, clock=clock
    )
    backend.launch(AttemptRef(0, 0))
    first = backend.launch_worker(0, {})
    for poll in range(3):  # either order, one listing per poll
        clock.now += 15.0
        if poll % 2:
            workers, live = backend.list_workers(), backend.list_live()
        else:
            live, workers = backend.list_live(), backend.list_workers()
        assert set(live) == {AttemptRef(0, 0)} and set(workers) == {0}
        assert api.listings == poll + 1
    # A poll that launches and terminates between the two: the second reader sees both, still one listing.
    clock.now += 15.0
    backend.list_live()
    second = backend.launch_worker(1, {})
    backend.terminate_worker(first)
    assert {i: w.id for i, w in backend.list_workers().items()} == {1: second.id}
    assert api.listings == 4
    # One reader alone lists afresh each time; a listing older than the reuse window is not reused.
    backend.list_workers()
    assert api.listings == 5
    clock.now += 15.0
    backend.list_live()
    assert api.listings == 6
    api.close()


def test_a_listing_too_old_is_not_reused(fake: FakeRunPod, tmp_path: Path) -> None:
    api, clock = _counting(fake), _Clock()
    compute = RunPodCompute(image=IMAGE, gpu_types=(A5000,), spot=False)
    backend = RunPodBackend(
        STUDY, compute, RunPodVolume(id=VOLUME, data_center=DC), DirectoryVolume(tmp_path / "vol"), api,
        clock=clock, listing_reuse_s=2.0,
    )  # fmt: skip
    backend.list_live()
    clock.now += 2.5
    backend.list_workers()
    assert api.listings == 2
    api.close()


def test_two_worker_pods_of_one_index_the_oldest_is_listed_the_other_an_extra(
    backend: RunPodBackend, api: RunPodApi, fake: FakeRunPod
) -> None:
    first = backend.launch_worker(6, {})
    second = api.create_pod(
        PodRequest(
            name=worker_pod_name(STUDY, 6), image=IMAGE, gpu_type=A4000, data_center_ids=(DC,), volume_id=VOLUME,
            env=worker_pod_env(STUDY, 6, "/workspace", {}),
        )
    )  # fmt: skip
    assert fake.pod(second.id).created_at > fake.pod(first.id).created_at
    workers = backend.list_workers()
    assert set(workers) == {6} and workers[6].id == first.id
    extras = backend.worker_extras()
    assert [(w.index, w.id) for w in extras] == [(6, second.id)]
    billing = extras[0].billing
    assert billing is not None and billing.usd_per_hr == pytest.approx(0.25) and billing.started_at is not None
    backend.terminate_worker(extras[0])
    backend.terminate_worker(extras[0])  # gone: silently fine
    assert backend.list_workers()[6].id == first.id and backend.worker_extras() == []


def test_an_exited_worker_pod_is_not_listed_and_is_reaped(fake: FakeRunPod, tmp_path: Path) -> None:
    backend = _backend(fake, tmp_path)  # spot
    worker = backend.launch_worker(0, {})
    fake.wait_for(worker.id, "RUNNING", timeout=30)
    fake.preempt(worker.id)
    fake.wait_for(worker.id, "EXITED", timeout=30)
    assert backend.list_workers() == {}
    assert backend.reap_dead() == []  # attempts' handles only; the worker's pod is terminated all the same
    assert fake.pod(worker.id).status == "TERMINATED"


def test_worker_pods_bill_per_second_on_the_fake(backend: RunPodBackend, fake: FakeRunPod) -> None:
    worker = backend.launch_worker(0, {})
    fake.advance(3600)
    view = fake.pod(worker.id)
    assert view.billed_seconds > 3000
    assert view.billed_usd == pytest.approx(view.billed_seconds / 3600 * view.cost_per_hr, rel=1e-6)
    billing = backend.list_workers()[0].billing
    assert billing is not None and billing.usd_per_hr == pytest.approx(view.cost_per_hr)


STRAY_SPAWNER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], process_group=0)  # an attempt's own group
time.sleep(600)
"""


def test_a_process_a_worker_pod_moved_to_its_own_group_ends_with_its_pod(tmp_path: Path) -> None:
    """A warm worker runs each attempt in a process group of its own: the fake's container still takes it down."""
    (tmp_path / "vol").mkdir()
    script = tmp_path / "spawner.py"
    script.write_text(STRAY_SPAWNER)
    with FakeRunPod(
        volumes={VOLUME: tmp_path / "vol"}, api_keys={KEY}, time_scale=20.0, workdir=tmp_path / "fake",
        pod_command=[sys.executable, str(script)],
    ) as fake:  # fmt: skip
        backend = _backend(fake, tmp_path, spot=False)
        worker = backend.launch_worker(0, {})
        wait_for(lambda: len(live_pod_processes([worker.id])) >= 2, 60, "the pod's command and its stray")
        backend.terminate_worker(worker)
        assert wait_no_pod_processes([worker.id]) == []
        backend.close()
