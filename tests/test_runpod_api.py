"""The RunPod client against the fake over HTTP: bodies match the spec, errors map by status, retries by idempotency."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fake_runpod_support.openapi import CONTRACT

from hpo.backends import AttemptRef
from hpo.backends.runpod import (
    CandidateRefusedError,
    GraphQLGoneError,
    PodRequest,
    RunPodApi,
    is_capacity_message,
    parse_pod_name,
    pod_env,
    pod_name,
)
from hpo.backends.runpod._api import create_body, pod_from_json
from hpo.errors import (
    ApiUnavailableError,
    AuthError,
    BalanceError,
    CapacityError,
    ConfigError,
    LaunchUnknownError,
    PoolDeniedError,
    RequestRejectedError,
)
from hpo.fake_runpod import FakeRunPod

KEY = "rpa_client_test_key"
A5000 = "NVIDIA RTX A5000"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeRunPod]:
    root = tmp_path_factory.mktemp("api")
    (root / "vol").mkdir()
    with FakeRunPod(
        volumes={"vol0123456": root / "vol"}, api_keys={KEY}, time_scale=50.0, workdir=root / "fake",
        pod_command=["sleep", "600"],
    ) as server:
        yield server


@pytest.fixture
def api(fake: FakeRunPod) -> Iterator[RunPodApi]:
    waits: list[float] = []
    client = RunPodApi(KEY, rest_url=fake.url, graphql_base=fake.url, sleep=waits.append)
    client.waits = waits  # type: ignore[attr-defined]
    yield client
    for pod in client.list_pods():
        client.terminate_pod(pod.id)
    client.close()


def _request(name: str, **changes: object) -> PodRequest:
    fields: dict[str, object] = {
        "name": name, "image": "ghcr.io/example/trial:1", "gpu_type": A5000, "data_center_ids": ("EU-RO-1",),
        "cuda_versions": ("12.4",), "volume_id": "vol0123456", "env": pod_env("s", AttemptRef(1, 0), "/workspace"),
    }
    fields.update(changes)
    return PodRequest(**fields)  # type: ignore[arg-type]


def test_pod_names_round_trip_even_with_dashes_in_the_study() -> None:
    name = pod_name("f5-lr", AttemptRef(12, 3))
    assert name == "hpo-f5-lr-12-3"
    assert parse_pod_name("f5-lr", name) == AttemptRef(12, 3)
    assert parse_pod_name("f5", name) is None
    assert parse_pod_name("f5-lr", "hpo-f5-lr-x-3") is None


def test_the_create_body_matches_runpods_spec() -> None:
    body = create_body(_request("hpo-s-1-0", ports=("8888/http",)))
    assert CONTRACT.request_problems("POST", "/v2/pods", body) == []
    assert body["mounts"] == {"network": [{"volumeId": "vol0123456", "path": "/workspace"}]}
    assert body["cloud"] == "SECURE" and body["gpu"] == {"id": A5000, "count": 1, "allowedCudaVersions": ["12.4"]}
    assert body["env"] == {"HPO_STUDY": "s", "HPO_TRIAL": "1", "HPO_ATTEMPT": "0", "HPO_VOLUME": "/workspace"}


def test_capacity_texts() -> None:
    assert is_capacity_message("There are no longer any instances available with the requested specifications.")
    assert not is_capacity_message("gpu.id: unknown GPU type 'X'")


def test_create_list_get_terminate(api: RunPodApi) -> None:
    pod = api.create_pod(_request("hpo-s-1-0"))
    assert pod.status == "provisioning" and pod.gpu_type == A5000 and pod.cost_per_hr == pytest.approx(0.27)
    assert pod.id in {p.id for p in api.list_pods()}
    assert api.get_pod(pod.id) is not None
    api.terminate_pod(pod.id)
    api.terminate_pod(pod.id)  # gone: 404 is success
    assert api.get_pod(pod.id) is None


def test_spot_pod_through_graphql_at_the_live_price(api: RunPodApi, fake: FakeRunPod) -> None:
    price = api.gpu_price(A5000)
    assert price.spot == pytest.approx(0.14) and price.on_demand == pytest.approx(0.27)
    pod = api.create_spot_pod(_request("hpo-s-2-0"), price.minimum_bid or 0.14)
    assert fake.pod(pod.id).spot and pod.name == "hpo-s-2-0"
    # An error we do not recognise concerns this candidate only (the backend tries the next one).
    with pytest.raises(CandidateRefusedError, match="bidPerGpu"):
        api.create_spot_pod(_request("hpo-s-3-0"), 0.01)
    # One that names the image would fail for every candidate: the request itself is wrong.
    with pytest.raises(RequestRejectedError, match="image") as caught:
        api.create_spot_pod(_request("hpo-s-3-1", image="ghcr.io/Bad/Case:1"), 0.5)
    assert not isinstance(caught.value, CandidateRefusedError)


def test_errors_map_by_status(api: RunPodApi, fake: FakeRunPod) -> None:
    fake.set_capacity(A5000, 0)
    try:
        with pytest.raises(CapacityError):
            api.create_pod(_request("hpo-s-4-0"))
        with pytest.raises(CapacityError):
            api.create_spot_pod(_request("hpo-s-4-0"), 0.2)
    finally:
        fake.set_capacity(A5000, None)
    with pytest.raises(RequestRejectedError, match="gpu.id"):
        api.create_pod(_request("hpo-s-5-0", gpu_type="NVIDIA RTX A9999"))
    with pytest.raises(RequestRejectedError, match="422"):
        api.create_pod(_request("hpo-s-5-0", container_disk_gb=0))
    fake.deny_pool(A5000)
    try:
        with pytest.raises(PoolDeniedError):
            api.create_pod(_request("hpo-s-6-0"))
    finally:
        fake.allow_pool(A5000)
    balance = fake.balance()
    fake.set_balance(0)
    try:
        with pytest.raises(BalanceError):
            api.create_pod(_request("hpo-s-7-0"))
    finally:
        fake.set_balance(balance)
    with pytest.raises(AuthError, match="RUNPOD_API_KEY") as info:
        RunPodApi("wrong", rest_url=fake.url).list_pods()
    assert "wrong" not in str(info.value)


def test_reads_retry_on_5xx_and_429_but_creates_only_on_429(api: RunPodApi, fake: FakeRunPod) -> None:
    fake.inject_fault("server_error", times=2)
    assert isinstance(api.list_pods(), list)
    fake.inject_fault("rate_limit", times=1)
    pod = api.create_pod(_request("hpo-s-8-0"))
    waits = api.waits  # type: ignore[attr-defined]
    assert len(waits) == 3 and all(0 < w < 4 for w in waits[:2]) and waits[2] == 1.0  # backoff twice, then Retry-After
    fake.inject_fault("server_error", times=1)  # answers 500 without creating: looked up, not found, created again
    again = api.create_pod(_request("hpo-s-9-0"))
    fake.inject_fault("create_then_500", times=1)  # creates, then answers 500: found by name, not created twice
    third = api.create_pod(_request("hpo-s-10-0"))
    names = [p.name for p in api.list_pods()]
    assert names.count("hpo-s-10-0") == 1 and {pod.id, again.id, third.id} <= {p.id for p in api.list_pods()}


def test_from_env_needs_a_key() -> None:
    with pytest.raises(AuthError, match="RUNPOD_API_KEY is not set"):
        RunPodApi.from_env({})
    with pytest.raises(ApiUnavailableError):
        RunPodApi("k", rest_url="http://127.0.0.1:9", attempts=2, sleep=lambda _: None, timeout=1).list_pods()


def _made(fake: FakeRunPod, name: str) -> int:
    """How many pods the fake ever made under ``name`` (terminated ones too): one per create that went through."""
    return [view.name for view in fake.pods(include_terminated=True)].count(name)


def _closed_port_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("spot", [False, True], ids=["rest", "graphql"])
def test_a_create_answered_500_that_no_lookup_can_settle_is_launch_unknown_and_never_posted_again(
    api: RunPodApi, fake: FakeRunPod, spot: bool
) -> None:
    name = f"hpo-s-20-{int(spot)}"
    fake.inject_fault("create_then_500", times=1)  # the pod is made and bills, the caller hears 500
    fake.inject_fault("list_error", times=5)  # and every lookup by name of this call fails (5 tries)
    with pytest.raises(LaunchUnknownError, match="may exist") as info:
        api.create_spot_pod(_request(name), 0.2) if spot else api.create_pod(_request(name))
    assert isinstance(info.value, ApiUnavailableError)  # the controller rides it out
    assert _made(fake, name) == 1  # one create posted, not two
    assert [p.name for p in api.list_pods()].count(name) == 1  # the next listing that answers shows it


@pytest.mark.parametrize("spot", [False, True], ids=["rest", "graphql"])
def test_a_create_answered_500_that_a_lookup_shows_unmade_is_posted_once_more(
    api: RunPodApi, fake: FakeRunPod, spot: bool
) -> None:
    name = f"hpo-s-21-{int(spot)}"
    fake.inject_fault("server_error", times=1)  # 500 without making anything; the lookup then answers "absent"
    pod = api.create_spot_pod(_request(name), 0.2) if spot else api.create_pod(_request(name))
    assert pod.name == name and _made(fake, name) == 1
    assert api.waits == [2.0]  # type: ignore[attr-defined]  # one pause between the two creates


def test_reads_failing_beyond_their_retries_raise_api_unavailable(api: RunPodApi, fake: FakeRunPod) -> None:
    fake.inject_fault("server_error", times=5)  # as many as the client's tries
    with pytest.raises(ApiUnavailableError, match="gave up after 5 tries") as info:
        api.list_pods()
    assert info.value.status == 500 and info.value.path == "/v2/pods"
    fake.inject_fault("rate_limit", times=5)
    with pytest.raises(ApiUnavailableError) as info:
        api.gpu_price(A5000)
    assert info.value.status == 429
    assert isinstance(api.list_pods(), list)  # the faults are spent: RunPod is back
    # What retrying cannot fix stays what it was (the controller stops for it).
    with pytest.raises(AuthError) as auth:
        RunPodApi("wrong", rest_url=fake.url).list_pods()
    assert not isinstance(auth.value, ApiUnavailableError)


def test_refused_connections_are_unavailable_and_a_create_never_sent_is_not_unknown() -> None:
    url = _closed_port_url()
    client = RunPodApi("k", rest_url=url, graphql_base=url, attempts=2, sleep=lambda _: None, timeout=1)
    with pytest.raises(ApiUnavailableError, match="cannot reach RunPod"):
        client.list_pods()
    with pytest.raises(ApiUnavailableError) as info:
        client.create_pod(_request("hpo-s-22-0"))
    assert not isinstance(info.value, LaunchUnknownError)  # no connection was ever opened: nothing was made
    with pytest.raises(ApiUnavailableError) as info:
        client.create_spot_pod(_request("hpo-s-22-0"), 0.2)
    assert not isinstance(info.value, LaunchUnknownError)


def test_a_call_never_waits_past_its_deadline(fake: FakeRunPod) -> None:
    waits: list[float] = []
    short = RunPodApi(KEY, rest_url=fake.url, graphql_base=fake.url, sleep=waits.append, deadline=0.5)
    fake.inject_fault("rate_limit", times=1)  # Retry-After: 1, past the deadline: give up now, do not wait
    with pytest.raises(ApiUnavailableError, match="gave up after 1 try"):
        short.list_pods()
    assert waits == []
    patient = RunPodApi(KEY, rest_url=fake.url, graphql_base=fake.url, sleep=waits.append)  # 20 s by default
    fake.inject_fault("rate_limit", times=1)
    assert isinstance(patient.list_pods(), list) and waits == [1.0]  # Retry-After honoured
    capped = RunPodApi(KEY, rest_url=fake.url, graphql_base=fake.url, sleep=waits.append, max_wait=0.25)
    fake.inject_fault("rate_limit", times=1)
    assert isinstance(capped.list_pods(), list) and waits == [1.0, 0.25]  # ... capped at max_wait


@pytest.mark.parametrize(
    ("runtime", "uptime"),
    [
        ({"uptime": 12}, 12.0),
        ({"uptime": 0}, 0.0),
        ({"uptime": 3.5}, 3.5),
        ({"uptime": -1}, None),
        ({"uptime": "12"}, None),
        ({"uptime": True}, None),
        ({"uptime": float("nan")}, None),
        ({}, None),
        (None, None),
        ("garbage", None),
    ],
)
def test_a_pods_uptime_is_read_when_sane_and_ignored_otherwise(runtime: object, uptime: float | None) -> None:
    raw = {
        "id": "p1", "name": "hpo-s-1-0", "status": "RUNNING", "runtime": runtime,
        "createdAt": "2026-06-01T12:00:00Z", "startedAt": "2026-06-01T12:00:30Z",
    }
    pod = pod_from_json(raw)
    assert pod.uptime_s == uptime
    expected = None if uptime is None else pod.started_at.timestamp() + uptime  # type: ignore[union-attr]
    assert pod.provider_time() == expected


# -- issue 12 -----------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["https://rest.runpod.io/v1", "http://127.0.0.1:8765/v2/", "https://api.runpod.io/V2"])
def test_a_rest_base_ending_in_a_version_is_refused_in_one_line(base: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RunPodApi(KEY, rest_url=base)
    assert "\n" not in str(caught.value) and "version" in str(caught.value)
    with pytest.raises(ConfigError, match="HPO_RUNPOD_REST_URL"):
        RunPodApi.from_env({"RUNPOD_API_KEY": KEY, "HPO_RUNPOD_REST_URL": base})


def test_the_rest_base_is_our_own_variable_and_runpodctls_is_not_taken(fake: FakeRunPod) -> None:
    env = {"RUNPOD_API_KEY": KEY, "HPO_RUNPOD_REST_URL": fake.url, "RUNPOD_API_URL": "https://rest.runpod.io/v1"}
    client = RunPodApi.from_env(env)
    assert client.rest_url == fake.url and isinstance(client.list_pods(), list)
    client.close()
    # runpodctl's value alone (with /v1) is not ours: the default base, not …/v1/v2/pods.
    alone = RunPodApi.from_env({"RUNPOD_API_KEY": KEY, "RUNPOD_API_URL": "https://rest.runpod.io/v1"})
    assert alone.rest_url == "https://api.runpod.io"
    alone.close()


def test_registries_are_read_as_id_by_name(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("registries")
    with FakeRunPod(api_keys={KEY}, workdir=root / "fake", registries={"ghcr": "reg1", "hub": "reg2"}) as server:
        client = RunPodApi(KEY, rest_url=server.url, graphql_base=server.url, sleep=lambda _: None)
        assert client.registries() == {"ghcr": "reg1", "hub": "reg2"}
        client.close()


def test_spot_is_priced_per_data_center(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("perdc")
    with FakeRunPod(api_keys={KEY}, workdir=root / "fake", bid_floor_swing=0.3) as server:
        client = RunPodApi(KEY, rest_url=server.url, graphql_base=server.url, sleep=lambda _: None)
        for dc in ("EU-RO-1", "US-TX-3"):
            quote = client.spot_price(A5000, data_center=dc)
            assert quote.data_center == dc
            assert quote.minimum_bid == pytest.approx(server.minimum_bid(A5000, dc), abs=1e-3)
            assert quote.market is not None and quote.market >= quote.minimum_bid  # type: ignore[operator]
        client.close()


def test_a_retired_graphql_is_told_apart_from_a_refused_request(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("gone")
    with FakeRunPod(api_keys={KEY}, workdir=root / "fake", graphql_retired=True) as server:
        client = RunPodApi(KEY, rest_url=server.url, graphql_base=server.url, sleep=lambda _: None)
        with pytest.raises(GraphQLGoneError):
            client.spot_price(A5000, data_center="EU-RO-1")
        with pytest.raises(GraphQLGoneError):
            client.create_spot_pod(_request("hpo-s-1-0"), 0.5)
        assert server.pods() == []
        client.close()


def test_spot_create_body_carries_credential_placement_and_deadline() -> None:
    from datetime import UTC, datetime

    from hpo.backends.runpod._api import spot_input

    request = _request(
        "hpo-s-1-0", registry_auth_id="reg1", terminate_after=datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
    )
    data = spot_input(request, 0.2)
    assert data["containerRegistryAuthId"] == "reg1" and data["dataCenterId"] == "EU-RO-1"
    assert data["terminateAfter"] == "2026-09-01T12:00:00Z"
    body = create_body(request)
    assert body["registry"] == "reg1" and body["dataCenterIds"] == ["EU-RO-1"]
    assert CONTRACT.request_problems("POST", "/v2/pods", body) == []  # `registry` is the spec's field
