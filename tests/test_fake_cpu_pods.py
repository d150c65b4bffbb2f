"""CPU pods and the CPU catalog, in the fake RunPod and through our client, over real HTTP.

A CPU pod is ``POST /v2/pods`` with ``cpu: {id, vcpuCount}`` instead of
``gpu`` (RunPod's ``CreateCpuConfig``); it bills ``securePerVcpu`` times its
vCPUs per hour, per second, takes no GPU capacity, and runs the same
container command as a GPU pod, with the volume mounted. Every ``/v2``
response is checked against RunPod's v2 spec, and so is every body our
client sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fake_runpod_support.openapi import CONTRACT
from test_bad_input_api import JunkServer, _json
from test_fake_runpod import KEY, VOLUME, api, container_env, fake, fake_options, gql, pod_body, volume_dir, wait_until  # noqa: F401  (fixtures reused)

from hpo.backends.runpod import PodRequest, RunPodApi, _api
from hpo.backends.runpod._api import create_body, pod_from_json, spot_input
from hpo.fake_runpod import CPU_FLAVORS, NO_CAPACITY_ON_DEMAND, FakeRunPod

A5000 = "NVIDIA RTX A5000"


def cpu_body(name: str = "ctl", flavor: str = "cpu3c", vcpus: int = 4, **overrides: Any) -> dict[str, Any]:
    """A v2 create body for a CPU pod with the volume at /workspace (no data center: it follows the volume)."""
    body = pod_body(name, cpu={"id": flavor, "vcpuCount": vcpus}, **overrides)
    del body["gpu"]
    del body["dataCenterIds"]
    return body


def cpu_request(name: str = "hpo-s-controller", **changes: Any) -> PodRequest:
    fields: dict[str, Any] = {
        "name": name, "image": "ghcr.io/example/trial:1", "gpu_type": "", "cpu_flavor": "cpu5c", "vcpu_count": 2,
        "volume_id": VOLUME, "env": {"OUT_DIR": "/workspace/out"},
    }  # fmt: skip
    fields.update(changes)
    return PodRequest(**fields)


@pytest.fixture
def client(fake: FakeRunPod) -> Iterator[RunPodApi]:
    api_client = RunPodApi(KEY, rest_url=fake.url, graphql_base=fake.url, sleep=lambda _: None)
    yield api_client
    api_client.close()


# ---------------------------------------------------------------------- the pod, through raw requests


@pytest.mark.parametrize("fake_options", [{"volume_data_center": "EUR-IS-1"}], indirect=True)
def test_a_cpu_pod_runs_the_container_on_the_volume_and_bills_per_vcpu(fake: FakeRunPod, volume_dir: Path) -> None:
    fake.set_capacity(A5000, 1)
    created = api(fake, "POST", "/v2/pods", json=cpu_body(vcpus=4))
    assert created.status_code == 201, created.text
    pod = created.json()
    assert "gpu" not in pod
    assert pod["cpu"] == {"id": "cpu3c", "vcpuCount": 4, "memory": 8}  # 2 GB per vCPU
    assert pod["cost"] == pytest.approx(0.04 * 4)
    assert pod["cudaVersion"] is None
    assert pod["dataCenterId"] == "EUR-IS-1"  # where the volume is
    assert pod["mounts"] == {"network": [{"volumeId": VOLUME, "path": "/workspace"}]}
    assert fake.account.capacity(A5000) == 1  # a CPU pod takes no GPU

    wait_until(lambda: api(fake, "GET", f"/v2/pods/{pod['id']}").json()["status"] == "RUNNING", "RUNNING")
    env = container_env(volume_dir, pod["id"])["env"]  # the pod command wrote it onto the mounted volume
    assert env["RUNPOD_GPU_COUNT"] == "0" and env["RUNPOD_CPU_COUNT"] == "4"
    assert env["RUNPOD_VOLUME_ID"] == VOLUME and env["RUNPOD_DC_ID"] == "EUR-IS-1"
    assert "CUDA_VERSION" not in env
    running = api(fake, "GET", f"/v2/pods/{pod['id']}").json()
    assert running["runtime"]["gpus"] == [] and running["cpu"]["vcpuCount"] == 4
    assert [p["id"] for p in api(fake, "GET", "/v2/pods").json()["pods"]] == [pod["id"]]

    fake.advance(3600)
    view = fake.pod(pod["id"])
    assert view.cpu_flavor == "cpu3c" and view.gpu_type is None and view.gpu_count == 0
    assert view.billed_usd == pytest.approx(0.16 * view.billed_seconds / 3600)
    assert view.billed_usd >= 0.16

    assert api(fake, "DELETE", f"/v2/pods/{pod['id']}").status_code == 204
    assert api(fake, "GET", f"/v2/pods/{pod['id']}").status_code == 404
    assert fake.pod(pod["id"]).status == "TERMINATED"
    # Terminated, the pod bills no more: the bill and the pod's own figure are read of the same span
    # (a live pod's bill grows between two reads, by more on a loaded machine).
    bill = api(fake, "GET", "/v2/billing/pods", params={"podId": pod["id"], "bucketSize": "hour"}).json()
    assert sum(r["totalAmount"] for r in bill["records"]) == pytest.approx(fake.pod(pod["id"]).billed_usd, rel=1e-3)
    assert all(r["gpuAmount"] == 0 and r["cpuAmount"] == r["totalAmount"] for r in bill["records"])


def test_graphql_lists_a_cpu_pod_without_a_gpu(fake: FakeRunPod) -> None:
    pod = api(fake, "POST", "/v2/pods", json=cpu_body(flavor="cpu5m", vcpus=2)).json()
    answer = gql(fake, "query { myself { pods { id gpuCount vcpuCount memoryInGb machine { gpuTypeId } } } }").json()
    assert answer["data"]["myself"]["pods"] == [
        {"id": pod["id"], "gpuCount": 0, "vcpuCount": 2, "memoryInGb": 16, "machine": {"gpuTypeId": None}}
    ]


@pytest.mark.parametrize(
    ("changes", "status", "field"),
    [
        ({"cpu": {"id": "cpu3c", "vcpuCount": 3}}, 400, "cpu.vcpuCount"),  # not a power of two
        ({"cpu": {"id": "cpu3c", "vcpuCount": 64}}, 400, "cpu.vcpuCount"),  # beyond the flavor's range
        ({"cpu": {"id": "cpu9x", "vcpuCount": 2}}, 400, "cpu.id"),
        ({"mounts": {"persistent": {"size": 20, "path": "/workspace"}}}, 400, "mounts.persistent"),
        ({"gpu": {"id": A5000, "count": 1}}, 400, "gpu"),  # both gpu and cpu
        ({"cpu": {"id": "cpu3c", "vcpuCount": 1}}, 422, "cpu.vcpuCount"),  # the schema's minimum
        ({"cpu": {"id": "cpu3c", "vcpuCount": 2, "count": 1}}, 422, "cpu"),  # unevaluatedProperties
        ({"cpu": {"id": "cpu3c"}}, 422, "cpu.vcpuCount"),
    ],
)
def test_bad_cpu_bodies_are_refused_naming_the_field(
    fake: FakeRunPod, changes: dict[str, Any], status: int, field: str
) -> None:
    body = cpu_body()
    body.update(changes)
    response = api(fake, "POST", "/v2/pods", json=body)
    assert response.status_code == status, response.text
    problem = response.json()
    if status == 400:
        assert problem["detail"].startswith(field + ":"), problem
    else:
        assert any(line.startswith(field) for line in problem["errors"]), problem
    assert fake.pods() == []


def test_neither_gpu_nor_cpu_is_refused(fake: FakeRunPod) -> None:
    body = cpu_body()
    del body["cpu"]
    response = api(fake, "POST", "/v2/pods", json=body)
    assert response.status_code == 400 and response.json()["detail"].startswith("gpu:")


def test_cpu_capacity_pool_and_balance(fake: FakeRunPod) -> None:
    fake.set_capacity("cpu3c", 0)
    sold_out = api(fake, "POST", "/v2/pods", json=cpu_body())
    assert sold_out.status_code == 400 and sold_out.json()["detail"] == NO_CAPACITY_ON_DEMAND
    assert api(fake, "POST", "/v2/pods", json=cpu_body(flavor="cpu3g")).status_code == 201  # another flavor
    fake.deny_pool("cpu5c")
    assert api(fake, "POST", "/v2/pods", json=cpu_body(flavor="cpu5c")).status_code == 403
    fake.set_balance(0.1)  # under an hour of a 4-vCPU cpu3m pod (0.28/h)
    assert api(fake, "POST", "/v2/pods", json=cpu_body(flavor="cpu3m")).status_code == 402


# ---------------------------------------------------------------------- the catalog


def test_the_cpu_catalog_lists_flavors_priced_per_vcpu(fake: FakeRunPod) -> None:
    cpus = {c["id"]: c for c in api(fake, "GET", "/v2/catalog/cpus").json()["cpus"]}
    assert set(cpus) == {"cpu3c", "cpu3g", "cpu3m", "cpu5c", "cpu5g", "cpu5m"}
    assert cpus["cpu3c"] == {
        "id": "cpu3c", "name": "Compute-Optimized", "group": "Gen 3", "vcpu": {"min": 2, "max": 32},
        "ramGbPerVcpu": 2.0, "price": {"securePerVcpu": 0.04, "serverlessPerVcpu": 0.03},
    }  # fmt: skip
    assert {c["ramGbPerVcpu"] for c in cpus.values()} == {2.0, 4.0, 8.0}
    for gen in "35":
        prices = [cpus[f"cpu{gen}{kind}"]["price"]["securePerVcpu"] for kind in "cgm"]
        assert prices == sorted(prices) and len(set(prices)) == 3  # c < g < m
    assert all(cpus[f"cpu5{k}"]["price"]["securePerVcpu"] > cpus[f"cpu3{k}"]["price"]["securePerVcpu"] for k in "cgm")

    one = api(fake, "GET", "/v2/catalog/cpus/cpu5m").json()
    assert one == cpus["cpu5m"]
    assert api(fake, "GET", "/v2/catalog/cpus/cpu9x").status_code == 404

    fake.set_capacity("cpu3c", 0)
    stocked = api(fake, "GET", "/v2/catalog/cpus", params={"include": "AVAILABILITY", "product": "POD"}).json()
    availability = {c["id"]: c["availability"] for c in stocked["cpus"]}
    assert availability["cpu3c"] == "NONE" and availability["cpu3g"] == "HIGH"
    assert "dataCenters" not in next(c for c in stocked["cpus"] if c["id"] == "cpu3c")
    too_big = {"include": "AVAILABILITY", "product": "POD", "vcpuCount": "64"}
    assert api(fake, "GET", "/v2/catalog/cpus/cpu3g", params=too_big).json()["availability"] == "NONE"
    assert api(fake, "GET", "/v2/catalog/cpus", params={"include": "AVAILABILITY"}).status_code == 400
    assert api(fake, "GET", "/v2/catalog/cpus", params={"vcpuCount": "4"}).status_code == 400
    odd = {"include": "AVAILABILITY", "product": "POD", "vcpuCount": "6"}
    assert api(fake, "GET", "/v2/catalog/cpus", params=odd).status_code == 400
    assert api(fake, "GET", "/v2/catalog/cpus", params={"include": "AVAILABILITY", "product": "GPU"}).status_code == 422


# ---------------------------------------------------------------------- our client


def test_the_client_sends_a_cpu_body_runpods_spec_accepts() -> None:
    body = create_body(cpu_request(cuda_versions=("12.4",), gpu_count=3))
    assert CONTRACT.request_problems("POST", "/v2/pods", body) == []
    assert body["cpu"] == {"id": "cpu5c", "vcpuCount": 2}
    assert "gpu" not in body and "allowedCudaVersions" not in str(body)
    assert body["mounts"] == {"network": [{"volumeId": VOLUME, "path": "/workspace"}]}
    gpu_body = create_body(cpu_request(cpu_flavor=None, gpu_type=A5000))
    assert "cpu" not in gpu_body and gpu_body["gpu"] == {"id": A5000, "count": 1}
    with pytest.raises(ValueError, match="spot"):
        spot_input(cpu_request(), 0.1)


def test_the_client_creates_lists_bills_and_terminates_a_cpu_pod(fake: FakeRunPod, client: RunPodApi) -> None:
    since = fake.clock.to_datetime(fake.now()) - timedelta(minutes=1)
    pod = client.create_pod(cpu_request())
    assert pod.cpu_flavor == "cpu5c" and pod.vcpu_count == 2
    assert pod.gpu_type is None and pod.gpu_count == 0
    assert pod.cost_per_hr == pytest.approx(2 * CPU_FLAVORS["cpu5c"].secure_per_vcpu)
    listed = [p for p in client.list_pods() if p.id == pod.id]
    assert listed and listed[0].cpu_flavor == "cpu5c"
    got = client.get_pod(pod.id)
    assert got is not None and got.vcpu_count == 2 and got.data_center == "EU-RO-1"
    fake.advance(1800)
    billed = client.pod_billing(since)
    assert billed[pod.id] == pytest.approx(fake.pod(pod.id).billed_usd, rel=1e-2) and billed[pod.id] > 0
    client.terminate_pod(pod.id)
    client.terminate_pod(pod.id)  # gone: 404 is success
    assert client.get_pod(pod.id) is None


def test_the_client_reads_cpu_prices(client: RunPodApi) -> None:
    assert client.cpu_prices() == {flavor.id: flavor.secure_per_vcpu for flavor in CPU_FLAVORS.values()}


def test_cpu_prices_skip_junk_entries_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_api, "_WARNED", set())
    server = JunkServer()
    try:
        server.answers[("GET", "/v2/catalog/cpus")] = _json({"cpus": [
            {"id": "cpu3c", "price": {"securePerVcpu": 0.04}},
            {"id": "cpu3g", "price": {"securePerVcpu": "0.05"}},
            {"price": {"securePerVcpu": 0.07}},
            "cpu5c",
            {"id": "cpu5g", "price": None},
        ]})  # fmt: skip
        client = RunPodApi("k", rest_url=server.url, attempts=2, sleep=lambda _: None)
        with caplog.at_level("WARNING"):
            assert client.cpu_prices() == {"cpu3c": 0.04}
        assert sum("GET /v2/catalog/cpus: skipping entry" in r.getMessage() for r in caplog.records) == 4
        server.answers[("GET", "/v2/catalog/cpus")] = _json({"cpus": {"cpu3c": 0.04}})
        with pytest.raises(_api.ApiUnavailableError, match="GET /v2/catalog/cpus"):
            client.cpu_prices()
        client.close()
    finally:
        server.close()


def test_a_cpu_pod_with_junk_in_its_cpu_is_read_safely() -> None:
    base = {"id": "pod0000000001", "name": "hpo-s-controller", "status": "RUNNING"}
    pod = pod_from_json({**base, "cpu": {"id": "cpu3c", "vcpuCount": 4, "memory": 8}})
    assert (pod.cpu_flavor, pod.vcpu_count, pod.gpu_type, pod.gpu_count) == ("cpu3c", 4, None, 0)
    odd = pod_from_json({**base, "cpu": {"id": 7, "vcpuCount": "4"}})
    assert odd.cpu_flavor is None and odd.vcpu_count is None and odd.status == "running"
    assert pod_from_json({**base, "cpu": "cpu3c"}).cpu_flavor is None
    gpu = pod_from_json({**base, "gpu": {"id": A5000, "count": 2}})
    assert gpu.cpu_flavor is None and gpu.vcpu_count is None and gpu.gpu_count == 2
