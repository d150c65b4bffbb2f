"""The fake RunPod's own catalog and market, through real HTTP: ids as RunPod publishes them, credit, bids, registries.

The fake's catalog must not come from the project's config (then a wrong id
in the config could never show up in a test), so it is checked here against
RunPod's published v1 enums (``fake_runpod_support/openapi-v1.json``) and
RUNPOD.md §6's prices. The rest: an hour of credit for on-demand, a minimum
bid that moves on the fake clock per data center and preempts outbid pods,
registry credentials and private images, ``terminateAfter``, and a retired
GraphQL API. Every ``/v2`` response is checked against RunPod's v2 spec.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from fake_runpod_support.processes import started_fake
from studyfiles import wait_for
from test_fake_runpod import A5000, GRACE, KEY, SCALE, VOLUME, api, gql, pod_body

from hpo.fake_runpod import GPU_TYPES, FakeRunPod
from hpo.fake_runpod._catalog import KNOWN_DATA_CENTERS, OFFERED_CUDA_VERSIONS, BidFloor

V1_SPEC = Path(__file__).parent / "fake_runpod_support" / "openapi-v1.json"
FAKE_PACKAGE = Path(__file__).parents[1] / "hpo" / "fake_runpod"

POD_SCRIPT = """\
import os, signal, time
from pathlib import Path
out = Path(os.environ["OUT_DIR"]); out.mkdir(parents=True, exist_ok=True)
pod = os.environ.get("RUNPOD_POD_ID", "nopod")
signal.signal(signal.SIGTERM, lambda *_: (out / f"sigterm-{pod}").write_text("1"))
(out / f"ready-{pod}").write_text("1")
while True:
    time.sleep(0.01)
"""


@pytest.fixture
def fake_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Overrides of the fake's settings (parametrize indirectly)."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def fake(tmp_path: Path, fake_options: dict[str, Any]) -> Iterator[FakeRunPod]:
    """A started fake with one volume in EU-RO-1, pods running a sleeper that notes SIGTERM."""
    script = tmp_path / "pod.py"
    script.write_text(POD_SCRIPT)
    options: dict[str, Any] = {
        "volumes": {VOLUME: tmp_path / "vol"},
        "volume_data_center": "EU-RO-1",
        "api_keys": {KEY},
        "time_scale": SCALE,
        "provision_seconds": 10.0,
        "start_seconds": 10.0,
        "kill_grace_seconds": GRACE,
        "pod_command": [sys.executable, str(script)],
        "workdir": tmp_path / "work",
    }
    with started_fake(**{**options, **fake_options}) as server:
        yield server





def spot(bid: float, **extra: str) -> str:
    """``podRentInterruptable`` as the backend sends it; ``extra`` adds raw input fields (already GraphQL-quoted)."""
    fields = (
        f'bidPerGpu: {bid}, cloudType: SECURE, gpuCount: 1, gpuTypeId: "{A5000}", name: "spot-1", '
        f'imageName: "ghcr.io/example/hpo:1", networkVolumeId: "{VOLUME}", volumeMountPath: "/workspace", '
        f'env: [{{key: "OUT_DIR", value: "/workspace/out"}}], dataCenterId: "EU-RO-1"'
    )
    fields += "".join(f", {name}: {value}" for name, value in extra.items())
    return f"mutation {{ podRentInterruptable(input: {{{fields}}}) {{ id desiredStatus }} }}"


def on_demand(**extra: str) -> str:
    """``podFindAndDeployOnDemand`` as the runpod SDK sends it."""
    fields = (
        f'gpuTypeId: "{A5000}", cloudType: SECURE, gpuCount: 1, name: "od-1", imageName: "ghcr.io/example/hpo:1", '
        f'networkVolumeId: "{VOLUME}", volumeMountPath: "/workspace", env: [{{key: "OUT_DIR", value: "/workspace/out"}}]'
    )
    fields += "".join(f", {name}: {value}" for name, value in extra.items())
    return f"mutation {{ podFindAndDeployOnDemand(input: {{{fields}}}) {{ id desiredStatus lastStatusChange }} }}"


def lowest(fake: FakeRunPod, data_center: str | None) -> float:
    """``lowestPrice.minimumBidPrice`` of the A5000 in Secure Cloud, in one data center or anywhere."""
    where = f', dataCenterId: "{data_center}"' if data_center else ""
    query = (
        f'query {{ gpuTypes(input: {{id: "{A5000}"}}) {{ '
        f"lowestPrice(input: {{gpuCount: 1, secureCloud: true{where}}}) {{ minimumBidPrice }} }} }}"
    )
    (gpu,) = gql(fake, query).json()["data"]["gpuTypes"]
    return gpu["lowestPrice"]["minimumBidPrice"]


# ---------------------------------------------------------------------- the catalog itself


def _v1_enums() -> tuple[set[str], set[str], list[str]]:
    spec = json.loads(V1_SPEC.read_text(encoding="utf-8"))
    schemas = spec["components"]["schemas"]
    props = schemas["PodCreateInput"]["properties"]
    gpus = set(props["gpuTypeIds"]["items"]["enum"]) | set(schemas["GPUTypeId"]["enum"])
    return gpus, set(props["dataCenterIds"]["items"]["enum"]), list(props["allowedCudaVersions"]["items"]["enum"])


def test_the_fake_never_imports_the_projects_config() -> None:
    for source in FAKE_PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            assert not any(name.startswith("hpo.config") for name in names), f"{source.name} imports {names}"


def test_catalog_is_runpods_published_one() -> None:
    gpus, data_centers, cuda = _v1_enums()
    assert set(GPU_TYPES) == gpus  # exactly RunPod's ids, spelling (double spaces) kept
    assert data_centers <= KNOWN_DATA_CENTERS
    assert {"US-MD-1", "US-MO-1", "US-MO-2", "US-NC-2", "US-NE-1"} <= KNOWN_DATA_CENTERS  # S3 docs (RUNPOD.md §4)
    assert list(OFFERED_CUDA_VERSIONS) == cuda
    # RUNPOD.md §6, Secure Cloud on-demand and spot.
    section6 = {
        "NVIDIA RTX A5000": (0.27, 0.14), "NVIDIA RTX A4000": (0.25, 0.16),
        "NVIDIA RTX 4000 Ada Generation": (0.26, 0.19), "NVIDIA GeForce RTX 3090": (0.46, 0.22),
        "NVIDIA GeForce RTX 4090": (0.59, 0.29), "NVIDIA A100 80GB PCIe": (1.39, 0.60),
        "NVIDIA A100-SXM4-80GB": (1.49, 0.79), "NVIDIA H100 PCIe": (2.39, 1.35), "NVIDIA H100 80GB HBM3": (2.69, 1.50),
    }  # fmt: skip
    assert {gpu_id: (GPU_TYPES[gpu_id].secure, GPU_TYPES[gpu_id].secure_spot) for gpu_id in section6} == section6
    assert GPU_TYPES["NVIDIA RTX 4000 SFF Ada Generation"].secure is None  # not in Secure Cloud (§6)


def test_the_projects_config_ids_are_all_known_to_the_fake() -> None:
    # The config is checked against the fake's independent list, never the other way round.
    from hpo.backends.runpod._ids import CUDA_VERSIONS, DATA_CENTER_IDS, GPU_TYPE_IDS

    assert set(GPU_TYPE_IDS) <= set(GPU_TYPES)
    assert set(DATA_CENTER_IDS) <= KNOWN_DATA_CENTERS
    assert set(CUDA_VERSIONS) <= set(OFFERED_CUDA_VERSIONS)


def test_unknown_ids_are_refused(fake: FakeRunPod) -> None:
    bad_dc = api(fake, "POST", "/v2/pods", json=pod_body(dataCenterIds=["eu-ro-1"], mounts={}))
    assert bad_dc.status_code == 400 and bad_dc.json()["detail"].startswith("dataCenterIds:")
    bad_gpu = api(fake, "POST", "/v2/pods", json=pod_body(gpu={"id": "NVIDIA RTX A5000 ", "count": 1}))
    assert bad_gpu.status_code == 400 and bad_gpu.json()["detail"].startswith("gpu.id:")


# ---------------------------------------------------------------------- credit


def test_on_demand_needs_one_hour_of_credit(fake: FakeRunPod) -> None:
    fake.set_balance(0.20)  # an A5000 costs $0.27/hr on demand
    refused = api(fake, "POST", "/v2/pods", json=pod_body())
    assert refused.status_code == 402
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "one hour of credit" in refused.json()["detail"] and "balance" in refused.json()["detail"].lower()
    body = gql(fake, on_demand()).json()
    assert body["data"] == {"podFindAndDeployOnDemand": None}
    assert "balance" in body["errors"][0]["message"].lower()
    assert body["errors"][0]["extensions"] == {"code": "RUNPOD"}
    assert fake.pods() == []
    # Spot only needs a positive balance.
    assert "errors" not in gql(fake, spot(0.2)).json()
    fake.set_balance(0.30)
    assert api(fake, "POST", "/v2/pods", json=pod_body(name="trial-2")).status_code == 201


# ---------------------------------------------------------------------- the moving minimum bid


def test_bid_floor_is_deterministic_and_fixed_without_swing() -> None:
    gpu = GPU_TYPES[A5000]
    assert BidFloor().minimum_bid(gpu, "SECURE", "EU-RO-1", 12345.0) == 0.14
    a, b, other = BidFloor(0.3, 3600, 7), BidFloor(0.3, 3600, 7), BidFloor(0.3, 3600, 8)
    times = [0.0, 600.0, 1200.0, 1800.0]
    series = [a.minimum_bid(gpu, "SECURE", "EU-RO-1", t) for t in times]
    assert series == [b.minimum_bid(gpu, "SECURE", "EU-RO-1", t) for t in times]
    assert series != [other.minimum_bid(gpu, "SECURE", "EU-RO-1", t) for t in times]
    assert len(set(series)) > 1 and all(0.14 * 0.7 - 1e-9 <= floor <= 0.14 * 1.3 + 1e-9 for floor in series)
    with pytest.raises(ValueError):
        BidFloor(1.5)


# The fake's clock all but stands still here (it moves by advance() alone), so the floor read is the
# floor the create meets, however slow the machine.
@pytest.mark.parametrize("fake_options", [{"bid_floor_swing": 0.3, "seed": 3, "time_scale": 1e-9}], indirect=True)
def test_minimum_bid_moves_per_data_center_and_low_bids_are_refused(fake: FakeRunPod) -> None:
    ro, is1 = lowest(fake, "EU-RO-1"), lowest(fake, "EUR-IS-1")
    assert ro == fake.minimum_bid(A5000, "EU-RO-1") and is1 == fake.minimum_bid(A5000, "EUR-IS-1")
    assert ro != is1  # per data center
    assert lowest(fake, None) <= min(ro, is1)  # anywhere = the lowest floor
    before = ro
    fake.advance(900.0)
    assert lowest(fake, "EU-RO-1") != before  # it moves with the fake clock

    floor = lowest(fake, "EU-RO-1")
    low = gql(fake, spot(round(floor - 0.01, 3))).json()
    assert low["data"] == {"podRentInterruptable": None}
    message = low["errors"][0]["message"]
    assert message.startswith("bidPerGpu:") and "below the current minimum bid" in message and f"{floor:.3f}" in message
    assert fake.pods() == []
    assert "errors" not in gql(fake, spot(round(floor + 0.05, 3))).json()


@pytest.mark.parametrize("fake_options", [{"bid_floor_swing": 0.3, "seed": 3}], indirect=True)
def test_an_outbid_spot_pod_is_preempted(fake: FakeRunPod, tmp_path: Path) -> None:
    floor = lowest(fake, "EU-RO-1")
    pod_id = gql(fake, spot(round(floor + 0.001, 3))).json()["data"]["podRentInterruptable"]["id"]
    fake.wait_for(pod_id, "RUNNING")
    wait_for((tmp_path / "vol" / "out" / f"ready-{pod_id}").exists, 60, "the container to listen for SIGTERM")
    # When the floor first rises above the bid (within one period), from the fake's own (deterministic) floor.
    bid = fake.pod(pod_id).request.bid_per_gpu or 0.0
    now = fake.now()
    rises = next(
        t for t in range(int(now), int(now) + 3600, 10)
        if (fake.account.bid_floor.minimum_bid(GPU_TYPES[A5000], "SECURE", "EU-RO-1", t) or 0.0) > bid
    )  # fmt: skip
    fake.advance(max(0.0, rises - fake.now() + 1.0))
    wait_for((tmp_path / "vol" / "out" / f"sigterm-{pod_id}").exists, 60, "SIGTERM to reach the container")
    fake.advance(GRACE)
    view = fake.wait_for(pod_id, "EXITED")
    assert view.stop_reason == "outbid" and view.minimum_bid is not None
    assert view.last_status_change.startswith("Exited by Runpod")


@pytest.mark.parametrize(
    "fake_options", [{"bid_floor_swing": 0.3, "seed": 3, "outbid_preemption": False}], indirect=True
)
def test_outbid_preemption_is_a_knob(fake: FakeRunPod) -> None:
    floor = lowest(fake, "EU-RO-1")
    pod_id = gql(fake, spot(round(floor + 0.001, 3))).json()["data"]["podRentInterruptable"]["id"]
    fake.wait_for(pod_id, "RUNNING")
    for _ in range(60):
        fake.advance(60.0)
    assert fake.pod(pod_id).status == "RUNNING" and fake.pod(pod_id).stop_reason is None


# ---------------------------------------------------------------------- registries and private images


@pytest.mark.parametrize(
    "fake_options", [{"registries": {"ghcr-me": "regid123"}, "private_images": ["ghcr.io/private/"]}], indirect=True
)
def test_registries_are_listed_validated_and_recorded(fake: FakeRunPod) -> None:
    assert api(fake, "GET", "/v2/registries").json() == {"registries": [{"id": "regid123", "name": "ghcr-me"}]}
    assert api(fake, "GET", "/v2/registries/regid123").json() == {"id": "regid123", "name": "ghcr-me"}
    assert api(fake, "GET", "/v2/registries/nope").status_code == 404

    unknown = api(fake, "POST", "/v2/pods", json=pod_body(registry="regid999"))
    assert unknown.status_code == 400 and unknown.json()["detail"].startswith("registry:")
    created = api(fake, "POST", "/v2/pods", json=pod_body(image="ghcr.io/private/hpo:1", registry="regid123"))
    assert created.status_code == 201 and created.json()["registry"] == "regid123"
    assert fake.pod(created.json()["id"]).registry == "regid123"
    assert fake.wait_for(created.json()["id"], "RUNNING").status == "RUNNING"  # pulled with the credential

    wrong = gql(fake, spot(0.2, containerRegistryAuthId='"regid999"')).json()
    assert wrong["errors"][0]["message"].startswith("containerRegistryAuthId:")
    made = gql(fake, spot(0.2, containerRegistryAuthId='"regid123"')).json()
    assert fake.pod(made["data"]["podRentInterruptable"]["id"]).registry == "regid123"


@pytest.mark.parametrize("fake_options", [{"private_images": ["ghcr.io/private/"]}], indirect=True)
def test_a_private_image_without_a_credential_fails_to_pull(fake: FakeRunPod) -> None:
    created = api(fake, "POST", "/v2/pods", json=pod_body(image="ghcr.io/private/hpo:1"))
    assert created.status_code == 201
    pod_id = created.json()["id"]
    view = fake.wait_for(pod_id, "ERROR")
    assert "pull access denied for ghcr.io/private/hpo:1" in view.last_status_change and view.pids == ()
    assert api(fake, "GET", f"/v2/pods/{pod_id}").json()["status"] == "ERROR"
    shown = gql(fake, f'query {{ pod(input: {{podId: "{pod_id}"}}) {{ desiredStatus lastStatusChange }} }}').json()
    assert "pull access denied" in shown["data"]["pod"]["lastStatusChange"]
    # A public image next to it runs.
    public = api(fake, "POST", "/v2/pods", json=pod_body(name="trial-2")).json()["id"]
    assert fake.wait_for(public, "RUNNING").status == "RUNNING"


# ---------------------------------------------------------------------- terminateAfter


def test_terminate_after_ends_a_spot_pod_on_the_fake_clock(fake: FakeRunPod) -> None:
    deadline = fake.clock.to_datetime(fake.now() + 600.0).isoformat().replace("+00:00", "Z")
    pod_id = gql(fake, spot(0.2, terminateAfter=f'"{deadline}"')).json()["data"]["podRentInterruptable"]["id"]
    assert fake.pod(pod_id).request.terminate_after is not None
    fake.wait_for(pod_id, "RUNNING")
    fake.advance(600.0)  # to the deadline at once, rather than 3 s of real time at x200
    view = fake.wait_for(pod_id, "TERMINATED", timeout=120.0)
    assert view.stop_reason == "terminateAfter"
    assert fake.clock.to_datetime(view.terminated_at or 0.0) >= fake.clock.to_datetime(0) + timedelta(seconds=600)

    bad = gql(fake, spot(0.2, terminateAfter='"next tuesday"')).json()
    assert bad["errors"][0]["message"].startswith("terminateAfter:")


# ---------------------------------------------------------------------- GraphQL retired, pod keys


@pytest.mark.parametrize("fake_options", [{"graphql_retired": True}], indirect=True)
def test_graphql_can_be_retired_and_brought_back(fake: FakeRunPod) -> None:
    gone = gql(fake, spot(0.2))
    assert gone.status_code == 410 and "retired" in gone.json()["errors"][0]["message"]
    assert fake.pods() == []
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    back = requests.post(fake.url + "/_fake/graphql", json={"retired": False}, headers=headers, timeout=10)
    assert back.json() == {"retired": False}
    assert gql(fake, "query { gpuTypes { id } }").status_code == 200
    fake.retire_graphql()
    assert gql(fake, "query { gpuTypes { id } }").status_code == 410
    assert api(fake, "GET", "/v2/pods").status_code == 200  # REST lives on


def test_pod_key_access_control_route(fake: FakeRunPod) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = fake.url + "/_fake/pod-keys"
    assert requests.get(url, headers=headers, timeout=10).json() == {"rest": True, "graphql": True}
    assert requests.post(url, json={"rest": False}, headers=headers, timeout=10).json() == {
        "rest": False,
        "graphql": True,
    }
    assert requests.post(url, json={"rest": "no"}, headers=headers, timeout=10).status_code == 422
    pod_id = api(fake, "POST", "/v2/pods", json=pod_body()).json()["id"]
    key = fake.pod(pod_id).api_key
    assert api(fake, "GET", f"/v2/pods/{pod_id}", key=key).status_code == 403
    fake.set_pod_key_access(rest=True)
    assert api(fake, "GET", f"/v2/pods/{pod_id}", key=key).status_code == 200
