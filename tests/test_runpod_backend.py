"""The RunPod backend against the fake over HTTP: one pod per attempt, duplicates surfaced, RunPod's clock read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from studyfiles import wait_for

from hpo.backends import AttemptRef
from hpo.backends.runpod import PodRequest, RunPodApi, RunPodBackend, pod_env, pod_name, spot_deadline_seconds
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
