"""The fake RunPod server, through real HTTP: every /v2 response is checked against RunPod's OpenAPI spec.

Pods run a tiny script (``POD_SCRIPT``) that records its environment on the
volume, sleeps, and notes SIGTERM, so the tests can see what a container
sees, when it restarts, and how it dies. Timings are fake seconds at x200, so
a fake minute is 0.3 real seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fake_runpod_support.openapi import CONTRACT
from fake_runpod_support.processes import process_alive, started_fake, wait_no_pod_processes

from hpo.fake_runpod import (
    GPU_TYPES,
    NO_CAPACITY_ON_DEMAND,
    NO_CAPACITY_SPOT,
    POD_NOT_FOUND_TO_TERMINATE,
    FakeRunPod,
)

KEY = "test-key"
VOLUME = "vol0123456"
A5000 = "NVIDIA RTX A5000"
SCALE = 200.0  # fake seconds per real second
GRACE = 100.0  # fake seconds between SIGTERM and SIGKILL (0.5 s real)

POD_SCRIPT = """\
import json, os, signal, subprocess, sys, time
from pathlib import Path

out = Path(os.environ["OUT_DIR"])
out.mkdir(parents=True, exist_ok=True)
pod = os.environ.get("RUNPOD_POD_ID", "nopod")
mode = os.environ.get("MODE", "sleep")

def on_term(signum, frame):
    (out / f"sigterm-{pod}").write_text(str(os.getpid()))
    if mode == "term_exit":
        sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
if os.environ.get("CHILD"):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (out / f"child-{pod}").write_text(str(child.pid))
run = len(list(out.glob(f"env-{pod}-*.json")))
tmp = out / f".env-{pod}-{run}.tmp"
tmp.write_text(json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "pid": os.getpid()}))
tmp.rename(out / f"env-{pod}-{run}.json")
if mode == "exit":
    sys.exit(3)
while True:
    time.sleep(0.01)
"""


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def volume_dir(tmp_path: Path) -> Path:
    return tmp_path / "vol"


@pytest.fixture
def fake_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Overrides of the fake's settings: parametrize this fixture indirectly to change them for one test."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def fake(tmp_path: Path, volume_dir: Path, fake_options: dict[str, Any]) -> Iterator[FakeRunPod]:
    """A started fake with one volume in EU-RO-1; afterwards, no pod process may survive ``stop()``."""
    script = tmp_path / "pod.py"
    script.write_text(POD_SCRIPT)
    options: dict[str, Any] = {
        "volumes": {VOLUME: volume_dir},
        "volume_data_center": "EU-RO-1",
        "api_keys": {KEY},
        "time_scale": SCALE,
        "provision_seconds": 30.0,
        "start_seconds": 30.0,
        "kill_grace_seconds": GRACE,
        "restart_delay_seconds": 20.0,
        "pod_command": [sys.executable, str(script)],
        "workdir": tmp_path / "work",
        "seed": 0,
    }
    with started_fake(**{**options, **fake_options}) as server:
        yield server


def api(fake: FakeRunPod, method: str, path: str, *, key: str | None = KEY, **kwargs: Any) -> requests.Response:
    """One REST v2 call, its response checked against RunPod's spec."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    response = requests.request(method, fake.url + path, headers=headers, timeout=10, **kwargs)
    return CONTRACT.assert_response(response)


def gql(fake: FakeRunPod, query: str, *, key: str | None = KEY, via_query: bool = False) -> requests.Response:
    """One GraphQL call, the key as a Bearer header or (old SDKs) as ``?api_key=``."""
    headers, params = {}, {}
    if key is not None and via_query:
        params["api_key"] = key
    elif key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return requests.post(fake.url + "/graphql", json={"query": query}, headers=headers, params=params, timeout=10)


def control(fake: FakeRunPod, method: str, path: str, *, key: str | None = KEY, **kwargs: Any) -> requests.Response:
    """One call to a ``/_fake`` control route with the account's key (and JSON, as those routes require)."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return requests.request(method, fake.url + path, headers=headers, timeout=10, **kwargs)


def pod_body(name: str = "trial-1", **overrides: Any) -> dict[str, Any]:
    """A v2 create body for an A5000 pod with the volume at /workspace."""
    body: dict[str, Any] = {
        "name": name,
        "image": "ghcr.io/example/hpo:1",
        "gpu": {"id": A5000, "count": 1},
        "cloud": "SECURE",
        "dataCenterIds": ["EU-RO-1"],
        "mounts": {"network": [{"volumeId": VOLUME, "path": "/workspace"}]},
        "env": {"OUT_DIR": "/workspace/out"},
    }
    body.update(overrides)
    return body


def create(fake: FakeRunPod, **overrides: Any) -> dict[str, Any]:
    response = api(fake, "POST", "/v2/pods", json=pod_body(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


def spot_mutation(name: str = "spot-1", bid: float = 0.2, **extra_env: str) -> str:
    """``podRentInterruptable`` exactly as SkyPilot sends it (values interpolated, no variables)."""
    env = ", ".join(f'{{key: "{k}", value: "{v}"}}' for k, v in {"OUT_DIR": "/workspace/out", **extra_env}.items())
    fields = (
        f'bidPerGpu: {bid}, cloudType: SECURE, gpuCount: 1, gpuTypeId: "{A5000}", name: "{name}", '
        f'imageName: "ghcr.io/example/hpo:1", networkVolumeId: "{VOLUME}", volumeMountPath: "/workspace", '
        f'containerDiskInGb: 50, volumeInGb: 0, env: [{env}], dockerArgs: "", ports: "", dataCenterId: "EU-RO-1", '
        'allowedCudaVersions: ["12.4"]'
    )
    return f"mutation {{ podRentInterruptable(input: {{{fields}}}) {{ id desiredStatus imageName env machineId machine {{ podHostId }} }} }}"


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``predicate`` every 10 ms until it is truthy; fail naming ``what`` at the deadline.

    The deadline is generous (a process start on a loaded machine takes seconds): it only bounds a failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def env_files(volume_dir: Path, pod_id: str) -> list[Path]:
    return sorted((volume_dir / "out").glob(f"env-{pod_id}-*.json"))


def container_env(volume_dir: Path, pod_id: str, run: int = 0) -> dict[str, Any]:
    path = volume_dir / "out" / f"env-{pod_id}-{run}.json"
    wait_until(path.exists, f"container run {run} of {pod_id} to write its env")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------- auth


def test_missing_or_unknown_key_is_401_on_rest_and_graphql(fake: FakeRunPod) -> None:
    assert api(fake, "GET", "/v2/pods", key=None).status_code == 401
    response = api(fake, "GET", "/v2/pods", key="nope")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["title"] == "Unauthorized"
    assert api(fake, "POST", "/v2/pods", key="nope", json=pod_body()).status_code == 401
    assert fake.pods() == []

    assert gql(fake, "query { gpuTypes { id } }", key=None).status_code == 401
    assert gql(fake, "query { gpuTypes { id } }", key="nope").status_code == 401
    # Both ways the SDK has sent the key work.
    assert gql(fake, "query { gpuTypes { id } }").status_code == 200
    assert gql(fake, "query { gpuTypes { id } }", via_query=True).status_code == 200


def test_pod_scoped_key_reaches_only_its_own_pod(fake: FakeRunPod) -> None:
    mine, other = create(fake, name="mine"), create(fake, name="other")
    key = fake.pod(mine["id"]).api_key
    assert key != KEY

    assert api(fake, "GET", f"/v2/pods/{mine['id']}", key=key).status_code == 200
    assert api(fake, "GET", f"/v2/pods/{other['id']}", key=key).status_code == 403
    assert api(fake, "DELETE", f"/v2/pods/{other['id']}", key=key).status_code == 403
    assert api(fake, "GET", "/v2/pods", key=key).status_code == 403
    assert api(fake, "POST", "/v2/pods", key=key, json=pod_body()).status_code == 403
    assert api(fake, "GET", "/v2/catalog/gpus", key=key).status_code == 403
    # On GraphQL a pod's key may only terminate its own pod: anything else is a FORBIDDEN error (HTTP 200).
    refused = gql(fake, "query { gpuTypes { id } }", key=key)
    assert refused.status_code == 200
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN" and refused.json()["data"] is None
    other_terminate = gql(fake, f'mutation {{ podTerminate(input: {{podId: "{other["id"]}"}}) }}', key=key).json()
    assert other_terminate["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert fake.pod(other["id"]).status != "TERMINATED"

    assert api(fake, "DELETE", f"/v2/pods/{mine['id']}", key=key).status_code == 204
    # The key died with its pod.
    assert api(fake, "GET", f"/v2/pods/{mine['id']}", key=key).status_code == 401


# ---------------------------------------------------------------------- lifecycle and container


# Phases of 0.3 s real, so polling over HTTP sees each one even on a busy machine.
@pytest.mark.parametrize("fake_options", [{"provision_seconds": 60.0, "start_seconds": 60.0}], indirect=True)
def test_lifecycle_and_container_environment(
    fake: FakeRunPod, volume_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_RUNPOD_TEST_SECRET", "must-not-leak")
    given = {
        "OUT_DIR": "/workspace/out",
        "HPO_VOLUME": "/workspace",
        "STUDY_DIR": "/workspace/studies/demo",
        "NOT_A_MOUNT": "/workspacex/y",
        "PLAIN": "hello world",
    }
    pod = create(fake, env=given)
    assert pod["status"] == "PROVISIONING"
    assert len(pod["id"]) == 14 and pod["id"].isalnum() and pod["id"].islower()
    assert pod["cost"] == pytest.approx(0.27)
    assert pod["dataCenterId"] == "EU-RO-1"
    assert pod["env"] == given
    assert pod["mounts"] == {"network": [{"volumeId": VOLUME, "path": "/workspace"}]}
    assert pod["startedAt"] is None and pod["runtime"] is None

    seen: list[str] = []

    def running() -> bool:
        status = api(fake, "GET", f"/v2/pods/{pod['id']}").json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        return status == "RUNNING"

    wait_until(running, "the pod to reach RUNNING")
    assert seen == ["PROVISIONING", "STARTING", "RUNNING"]
    view = fake.pod(pod["id"])
    assert view.started_at == pytest.approx(view.created_at + 120.0)

    record = container_env(volume_dir, pod["id"])
    env = record["env"]
    assert env["OUT_DIR"] == str(volume_dir.resolve() / "out")
    assert env["HPO_VOLUME"] == str(volume_dir.resolve())
    assert env["STUDY_DIR"] == str(volume_dir.resolve() / "studies" / "demo")
    assert env["NOT_A_MOUNT"] == "/workspacex/y"
    assert env["PLAIN"] == "hello world"
    assert env["RUNPOD_POD_ID"] == pod["id"]
    assert env["RUNPOD_API_KEY"] == view.api_key != KEY
    assert env["RUNPOD_DC_ID"] == "EU-RO-1"
    assert env["RUNPOD_POD_HOSTNAME"].startswith(pod["id"])
    assert env["RUNPOD_GPU_COUNT"] == "1"
    assert int(env["RUNPOD_CPU_COUNT"]) > 0
    assert env["RUNPOD_VOLUME_ID"] == VOLUME
    assert env["PUBLIC_KEY"] == ""
    assert env["CUDA_VERSION"] == pod["cudaVersion"]
    assert env["HPO_RUNPOD_REST_URL"] == env["RUNPOD_API_BASE_URL"] == fake.url
    assert "RUNPOD_API_URL" not in env  # runpodctl's name (with /v1 in it), never set by RunPod or the fake
    injected = {
        "RUNPOD_POD_ID", "RUNPOD_API_KEY", "RUNPOD_DC_ID", "RUNPOD_POD_HOSTNAME", "RUNPOD_GPU_COUNT",
        "RUNPOD_CPU_COUNT", "RUNPOD_VOLUME_ID", "PUBLIC_KEY", "CUDA_VERSION", "HPO_RUNPOD_REST_URL", "RUNPOD_API_BASE_URL",
    }  # fmt: skip
    # Python itself may add a variable or two at startup (LC_CTYPE coercion); nothing else may appear.
    extra = set(env) - set(given) - injected - {"PATH", "HOME", "LANG", "LC_CTYPE"}
    assert not extra, f"the container saw variables it was not given: {sorted(extra)}"
    assert "FAKE_RUNPOD_TEST_SECRET" not in env
    assert Path(record["cwd"]).is_relative_to(fake.workdir / pod["id"])

    got = api(fake, "GET", f"/v2/pods/{pod['id']}").json()
    assert got["env"] == given  # the API echoes the env as given, not as rewritten
    assert got["startedAt"] is not None and got["runtime"]["uptime"] >= 0
    assert [p["id"] for p in api(fake, "GET", "/v2/pods").json()["pods"]] == [pod["id"]]


def test_container_that_exits_is_restarted(fake: FakeRunPod, volume_dir: Path) -> None:
    pod = create(fake, env={"OUT_DIR": "/workspace/out", "MODE": "exit"})
    wait_until(lambda: len(env_files(volume_dir, pod["id"])) >= 3, "two restarts")
    view = wait_until(lambda: (v := fake.pod(pod["id"])).restarts >= 2 and v, "restart count")
    assert 3 in view.exit_codes
    assert len(set(view.pids)) >= 3
    assert api(fake, "GET", f"/v2/pods/{pod['id']}").json()["status"] == "RUNNING"


def test_delete_kills_the_container_group_and_the_pod_vanishes(fake: FakeRunPod, volume_dir: Path) -> None:
    pod = create(fake, env={"OUT_DIR": "/workspace/out", "CHILD": "1"})
    child_file = volume_dir / "out" / f"child-{pod['id']}"
    # The file appears before its pid is written: wait for the whole number, not the name.
    wait_until(lambda: child_file.exists() and child_file.read_text().strip().isdigit(), "the container's child process")
    child = int(child_file.read_text())
    leader = fake.pod(pod["id"]).pid
    assert leader is not None and process_alive(leader) and process_alive(child)

    assert api(fake, "DELETE", f"/v2/pods/{pod['id']}").status_code == 204
    assert api(fake, "GET", f"/v2/pods/{pod['id']}").status_code == 404
    assert api(fake, "GET", "/v2/pods").json() == {"pods": []}
    assert api(fake, "DELETE", f"/v2/pods/{pod['id']}").status_code == 404
    wait_until(lambda: not process_alive(leader) and not process_alive(child), "the container's group to die")

    view = fake.pod(pod["id"])
    assert view.status == "TERMINATED" and view.pid is None
    billed = view.billed_usd
    time.sleep(0.05)
    assert fake.pod(pod["id"]).billed_usd == billed


def test_action_terminate_and_stop(fake: FakeRunPod) -> None:
    first, second = create(fake, name="a"), create(fake, name="b")
    assert api(fake, "POST", f"/v2/pods/{first['id']}/action", json={"action": "terminate"}).status_code == 204
    assert api(fake, "GET", f"/v2/pods/{first['id']}").status_code == 404
    stopped = api(fake, "POST", f"/v2/pods/{second['id']}/action", json={"action": "stop"})
    assert stopped.status_code == 200
    wait_until(lambda: fake.pod(second["id"]).status == "EXITED", "the stopped pod to exit")
    again = api(fake, "POST", f"/v2/pods/{second['id']}/action", json={"action": "stop"})
    assert again.status_code == 409
    assert api(fake, "POST", f"/v2/pods/{second['id']}/action", json={"action": "fly"}).status_code == 422


# ---------------------------------------------------------------------- preemption


def test_preemption_sends_sigterm_then_sigkill_and_leaves_the_pod_exited(fake: FakeRunPod, volume_dir: Path) -> None:
    response = gql(fake, spot_mutation(MODE="ignore_term"))
    pod_id = response.json()["data"]["podRentInterruptable"]["id"]
    container_env(volume_dir, pod_id)  # running, with its SIGTERM handler installed
    leader = fake.pod(pod_id).pid
    assert leader is not None

    preempted_at = fake.now()
    fake.preempt(pod_id)
    marker = volume_dir / "out" / f"sigterm-{pod_id}"
    wait_until(marker.exists, "the container to see SIGTERM")
    assert process_alive(leader), "SIGKILL came before the grace period ended"

    view = fake.wait_for(pod_id, "EXITED", timeout=60)
    assert view.exited_at is not None and view.exited_at - preempted_at >= GRACE - 1.0
    assert not process_alive(leader)
    assert view.stop_reason == "preempted" and view.pid is None
    got = api(fake, "GET", f"/v2/pods/{pod_id}").json()
    assert got["status"] == "EXITED" and got["cost"] == 0.0 and got["runtime"] is None

    billed = view.billed_usd
    fake.advance(3600)  # well past the restart delay: an EXITED pod neither restarts nor bills
    view = fake.pod(pod_id)
    assert view.billed_usd == billed
    assert view.pids == (leader,) and view.status == "EXITED"

    # Only spot pods are preempted; an EXITED pod can still be terminated.
    on_demand = create(fake, name="od")
    with pytest.raises(ValueError):
        fake.preempt(on_demand["id"])
    assert api(fake, "DELETE", f"/v2/pods/{pod_id}").status_code == 204


def test_preempt_control_route_and_a_container_that_exits_on_sigterm(fake: FakeRunPod, volume_dir: Path) -> None:
    response = gql(fake, spot_mutation(MODE="term_exit"))
    pod_id = response.json()["data"]["podRentInterruptable"]["id"]
    container_env(volume_dir, pod_id)
    preempted_at = fake.now()
    assert control(fake, "POST", f"/_fake/pods/{pod_id}/preempt").status_code == 200
    view = fake.wait_for(pod_id, "EXITED", timeout=60)
    assert (volume_dir / "out" / f"sigterm-{pod_id}").exists()
    assert view.exited_at is not None and view.exited_at - preempted_at < GRACE  # it left before SIGKILL
    listed = control(fake, "GET", "/_fake/pods").json()["pods"]
    assert [(p["id"], p["status"], p["stop_reason"]) for p in listed] == [(pod_id, "EXITED", "preempted")]


def test_random_preemption_hits_spot_pods_only(tmp_path: Path) -> None:
    script = tmp_path / "pod.py"
    script.write_text(POD_SCRIPT)
    with FakeRunPod(
        volumes={VOLUME: tmp_path / "vol"},
        api_keys={KEY},
        time_scale=SCALE,
        provision_seconds=0,
        start_seconds=0,
        kill_grace_seconds=1,
        preempt_rate_per_hour=3600.0,  # about one per fake second
        pod_command=[sys.executable, str(script)],
        workdir=tmp_path / "work",
    ) as fake:
        pod_id = gql(fake, spot_mutation()).json()["data"]["podRentInterruptable"]["id"]
        on_demand = create(fake)
        view = fake.wait_for(pod_id, "EXITED", timeout=60)
        assert view.stop_reason == "preempted"
        assert fake.pod(on_demand["id"]).status in ("RUNNING", "STARTING", "PROVISIONING")
        ids = [v.id for v in fake.pods()]
    assert not wait_no_pod_processes(ids)


# ---------------------------------------------------------------------- refusals and faults


def test_bad_bodies_are_422_with_every_violation_and_create_nothing(fake: FakeRunPod) -> None:
    body = pod_body()
    del body["name"]
    response = api(fake, "POST", "/v2/pods", json=body)
    assert response.status_code == 422
    assert any(line.startswith("name:") for line in response.json()["errors"])

    body = pod_body(gpu={"id": A5000, "count": "1"}, surprise=True)
    del body["name"]
    errors = api(fake, "POST", "/v2/pods", json=body).json()["errors"]
    assert len(errors) == 3, errors
    assert any(e.startswith("gpu.count:") for e in errors)
    assert any("surprise" in e for e in errors)

    assert api(fake, "POST", "/v2/pods", json=pod_body(mounts={"network": [{"volumeId": VOLUME}]})).status_code == 422
    assert api(fake, "POST", "/v2/pods", json=[]).status_code == 422
    assert fake.pods() == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"gpu": {"id": "NVIDIA RTX A9999", "count": 1}}, "gpu.id"),
        ({"mounts": {"network": [{"volumeId": "vol9999999", "path": "/workspace"}]}}, "mounts.network[0].volumeId"),
        ({"dataCenterIds": ["US-KS-2"]}, "dataCenterIds"),
        ({"dataCenterIds": ["eu-ro-1"]}, "dataCenterIds"),
        ({"cloud": "COMMUNITY"}, "cloud"),
        ({"cpu": {"id": "cpu3c", "vcpuCount": 2}}, "gpu"),
        ({"gpu": {"id": A5000, "count": 99}}, "gpu.count"),
    ],
)
def test_broken_rules_are_400_naming_the_field(fake: FakeRunPod, overrides: dict[str, Any], field: str) -> None:
    response = api(fake, "POST", "/v2/pods", json=pod_body(**overrides))
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(field + ":"), response.json()
    assert fake.pods() == []


def test_capacity_pool_and_balance_refusals(fake: FakeRunPod) -> None:
    fake.set_capacity(A5000, 1)
    create(fake)
    for _ in range(2):  # sold out now, and stays sold out
        response = api(fake, "POST", "/v2/pods", json=pod_body())
        assert response.status_code == 400
        assert response.json()["detail"] == NO_CAPACITY_ON_DEMAND
    fake.set_capacity(A5000, None)

    fake.deny_pool("NVIDIA GeForce RTX 4090")
    assert api(fake, "POST", "/v2/pods", json=pod_body(gpu={"id": "NVIDIA GeForce RTX 4090"})).status_code == 403

    fake.set_balance(0)
    response = api(fake, "POST", "/v2/pods", json=pod_body())
    assert response.status_code == 402 and "balance" in response.json()["detail"].lower()
    assert len(fake.pods()) == 1


def test_rate_limit_and_server_error_faults(fake: FakeRunPod) -> None:
    fake.inject_fault("rate_limit")
    response = api(fake, "POST", "/v2/pods", json=pod_body())
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert fake.pods() == []
    fake.inject_fault("server_error")
    assert api(fake, "GET", "/v2/pods").status_code == 500
    assert api(fake, "GET", "/v2/pods").status_code == 200
    control(fake, "POST", "/_fake/faults", json={"kind": "rate_limit", "times": 2}).raise_for_status()
    assert [api(fake, "GET", "/v2/pods").status_code for _ in range(3)] == [429, 429, 200]
    with pytest.raises(ValueError):
        fake.inject_fault("meteor")


def test_create_then_500_leaves_a_billing_pod(fake: FakeRunPod) -> None:
    fake.inject_fault("create_then_500")
    response = api(fake, "POST", "/v2/pods", json=pod_body(name="ghost"))
    assert response.status_code == 500
    pods = api(fake, "GET", "/v2/pods").json()["pods"]
    assert [p["name"] for p in pods] == ["ghost"]
    wait_until(lambda: fake.pod(pods[0]["id"]).billed_usd > 0, "the ghost pod to bill")
    assert api(fake, "POST", "/v2/pods", json=pod_body(name="next")).status_code == 201


# ---------------------------------------------------------------------- billing


def test_billing_matches_cost_per_second_and_the_billing_endpoint(fake: FakeRunPod) -> None:
    pod = create(fake)
    before = fake.now()
    view = fake.pod(pod["id"])
    after = fake.now()
    tick = 0.02 * SCALE
    assert before - view.created_at - tick <= view.billed_seconds <= after - view.created_at + tick
    assert view.billed_usd == pytest.approx(view.cost_per_hr / 3600 * view.billed_seconds)

    fake.advance(7200)  # two fake hours
    low = fake.now() - after
    view2 = fake.pod(pod["id"])
    high = fake.now() - before
    assert 0.27 / 3600 * low <= view2.billed_usd - view.billed_usd <= 0.27 / 3600 * high
    assert low >= 7200

    assert api(fake, "DELETE", f"/v2/pods/{pod['id']}").status_code == 204
    final = fake.pod(pod["id"])
    assert final.terminated_at is not None
    assert final.billed_seconds == pytest.approx(final.terminated_at - final.created_at)
    assert final.billed_usd == pytest.approx(0.27 / 3600 * final.billed_seconds)
    assert fake.balance() == pytest.approx(100.0 - final.billed_usd)

    for bucket in ("hour", "day"):
        bill = api(fake, "GET", "/v2/billing/pods", params={"podId": pod["id"], "bucketSize": bucket}).json()
        assert bill["metadata"]["totals"]["totalAmount"] == pytest.approx(final.billed_usd)
        assert sum(r["totalAmount"] for r in bill["records"]) == pytest.approx(final.billed_usd)
        assert {r["podId"] for r in bill["records"]} == {pod["id"]}
        assert bill["metadata"]["uniquePodCount"] == 1
    hours = api(fake, "GET", "/v2/billing/pods", params={"podId": pod["id"], "bucketSize": "hour"}).json()
    assert len(hours["records"]) >= 2  # two fake hours span at least two hour buckets
    assert api(fake, "GET", "/v2/billing/pods", params={"bucketSize": "fortnight"}).status_code == 422
    nobody = api(fake, "GET", "/v2/billing/pods", params={"podId": "nosuchpod", "lastN": 3}).json()
    assert nobody["records"] == [] and nobody["metadata"]["totals"]["totalAmount"] == 0


def test_zero_balance_stops_volume_pods_and_terminates_the_rest(fake: FakeRunPod) -> None:
    with_volume = create(fake, name="with-volume")
    without = create(fake, name="without", mounts={}, env={"OUT_DIR": str(fake.workdir / "out")})
    fake.wait_for(with_volume["id"], "RUNNING")
    fake.set_balance(0)
    assert fake.wait_for(with_volume["id"], "EXITED").stop_reason == "balance"
    assert fake.wait_for(without["id"], "TERMINATED").stop_reason == "balance"


# ---------------------------------------------------------------------- GraphQL


def test_graphql_spot_pod_appears_in_v2_listing(fake: FakeRunPod) -> None:
    response = gql(fake, spot_mutation(bid=0.2))
    assert response.status_code == 200
    created = response.json()["data"]["podRentInterruptable"]
    assert created["desiredStatus"] == "RUNNING" and created["env"] == ["OUT_DIR=/workspace/out"]
    assert created["machine"]["podHostId"].startswith(created["id"])
    pods = api(fake, "GET", "/v2/pods").json()["pods"]
    assert len(pods) == 1
    listed = pods[0]
    assert listed["id"] == created["id"] and listed["name"] == "spot-1"
    assert listed["cost"] == pytest.approx(0.2)
    assert listed["cloud"] == "SECURE" and listed["dataCenterId"] == "EU-RO-1"
    assert listed["env"] == {"OUT_DIR": "/workspace/out"}
    assert listed["mounts"] == {"network": [{"volumeId": VOLUME, "path": "/workspace"}]}
    assert listed["cudaVersion"] == "12.4"
    assert fake.pod(created["id"]).spot

    terminate = f'mutation {{ podTerminate(input: {{podId: "{created["id"]}"}}) }}'
    assert gql(fake, terminate).json() == {"data": {"podTerminate": None}}
    assert api(fake, "GET", "/v2/pods").json() == {"pods": []}
    gone = gql(fake, terminate).json()
    assert gone["errors"][0]["message"] == POD_NOT_FOUND_TO_TERMINATE


def test_graphql_errors_are_http_200_in_runpods_shape(fake: FakeRunPod) -> None:
    low = gql(fake, spot_mutation(bid=0.05))
    assert low.status_code == 200
    body = low.json()
    assert body["data"] == {"podRentInterruptable": None}
    (error,) = body["errors"]
    assert error["path"] == ["podRentInterruptable"] and error["extensions"] == {"code": "RUNPOD"}
    assert "bidPerGpu" in error["message"] and "0.14" in error["message"]

    fake.set_capacity(A5000, 0)
    sold_out = gql(fake, spot_mutation()).json()
    assert sold_out["errors"][0]["message"] == NO_CAPACITY_SPOT
    assert sold_out["data"] == {"podRentInterruptable": None}

    unknown = gql(fake, spot_mutation().replace(A5000, "NVIDIA RTX A9999")).json()
    assert unknown["errors"][0]["message"].startswith("gpuTypeId:")
    fake.set_capacity(A5000, None)
    fake.set_balance(-1)
    broke = gql(fake, spot_mutation()).json()
    assert "balance" in broke["errors"][0]["message"].lower()
    assert fake.pods() == []

    assert gql(fake, "query { nope }").status_code == 400  # does not validate against the schema


def test_graphql_gpu_types_carry_prices(fake: FakeRunPod) -> None:
    query = (
        f'query {{ gpuTypes(input: {{id: "{A5000}"}}) {{ id displayName memoryInGb secureCloud communityCloud '
        "securePrice communityPrice secureSpotPrice communitySpotPrice "
        "lowestPrice(input: {gpuCount: 1, secureCloud: true}) { minimumBidPrice uninterruptablePrice stockStatus } } }"
    )
    (gpu,) = gql(fake, query).json()["data"]["gpuTypes"]
    assert gpu["id"] == A5000 and gpu["memoryInGb"] == 24 and gpu["secureCloud"]
    assert gpu["securePrice"] == 0.27 and gpu["secureSpotPrice"] == 0.14
    assert gpu["lowestPrice"] == {"minimumBidPrice": 0.14, "uninterruptablePrice": 0.27, "stockStatus": "High"}
    fake.set_capacity(A5000, 0)
    (gpu,) = gql(fake, query).json()["data"]["gpuTypes"]
    assert gpu["lowestPrice"]["stockStatus"] == "None"

    everything = gql(fake, "query { gpuTypes { id securePrice secureSpotPrice } }").json()["data"]["gpuTypes"]
    prices = {g["id"]: (g["securePrice"], g["secureSpotPrice"]) for g in everything}
    assert prices["NVIDIA H100 80GB HBM3"] == (2.69, 1.50)
    assert prices["NVIDIA GeForce RTX 4090"] == (0.59, 0.29)


def test_runpod_sdk_talks_to_the_fake(fake: FakeRunPod, monkeypatch: pytest.MonkeyPatch) -> None:
    runpod = pytest.importorskip("runpod")
    monkeypatch.setenv("RUNPOD_API_BASE_URL", fake.url)
    monkeypatch.setattr(runpod, "api_key", KEY)
    gpu = runpod.get_gpu(A5000)
    # Without secureCloud, lowestPrice spans both clouds: community spot is the cheaper bid.
    assert gpu["id"] == A5000 and gpu["lowestPrice"]["minimumBidPrice"] == 0.09
    assert gql(fake, spot_mutation()).status_code == 200
    (pod,) = runpod.get_pods()
    assert runpod.get_pod(pod["id"])["podType"] == "INTERRUPTABLE"
    runpod.terminate_pod(pod["id"])
    assert runpod.get_pods() == []
    # On-demand through GraphQL, the way the SDK's create_pod sends it.
    created = runpod.create_pod(
        "sdk-pod", "ghcr.io/example/hpo:1", gpu_type_id=A5000, cloud_type="SECURE",
        network_volume_id=VOLUME, volume_mount_path="/workspace", env={"OUT_DIR": "/workspace/out"},
    )  # fmt: skip
    listed = api(fake, "GET", f"/v2/pods/{created['id']}").json()
    assert listed["cost"] == 0.27 and listed["cloud"] == "SECURE" and not fake.pod(created["id"]).spot


# ---------------------------------------------------------------------- catalog, contract, CLI


def test_catalog_lists_gpu_types_with_prices(fake: FakeRunPod) -> None:
    gpus = {g["id"]: g for g in api(fake, "GET", "/v2/catalog/gpus").json()["gpus"]}
    expected = {
        "NVIDIA RTX A5000": 0.27, "NVIDIA RTX A4000": 0.25, "NVIDIA RTX 4000 Ada Generation": 0.26,
        "NVIDIA GeForce RTX 3090": 0.46, "NVIDIA GeForce RTX 4090": 0.59, "NVIDIA A100 80GB PCIe": 1.39,
        "NVIDIA A100-SXM4-80GB": 1.49, "NVIDIA H100 PCIe": 2.39, "NVIDIA H100 80GB HBM3": 2.69,
    }  # fmt: skip
    assert {gpu_id: gpus[gpu_id]["price"]["secure"] for gpu_id in expected} == expected
    assert gpus["NVIDIA GeForce RTX 3090"]["price"]["community"] == 0.22
    fake.set_capacity(A5000, 0)
    stocked = api(fake, "GET", "/v2/catalog/gpus", params={"include": "AVAILABILITY", "product": "POD"}).json()
    availability = {g["id"]: g["availability"] for g in stocked["gpus"]}
    assert availability[A5000] == "NONE" and availability["NVIDIA GeForce RTX 4090"] == "HIGH"
    assert api(fake, "GET", "/v2/catalog/gpus", params={"include": "AVAILABILITY"}).status_code == 400
    assert api(fake, "GET", f"/v2/catalog/gpus/{A5000}").json()["memory"] == 24


def test_fake_contract_copy_matches_the_spec_and_covers_the_config_ids() -> None:
    from hpo.backends.runpod._ids import GPU_TYPE_IDS
    from hpo.fake_runpod._contract import SCHEMAS

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            dropped = ("description", "example", "examples", "x-enum-varnames")
            return {k: strip(v) for k, v in node.items() if k not in dropped}
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    spec = CONTRACT.spec["components"]["schemas"]
    assert SCHEMAS == {name: strip(spec[name]) for name in SCHEMAS}
    assert set(GPU_TYPE_IDS) <= set(GPU_TYPES)


def test_command_line_serves_until_interrupted(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo.fake_runpod", "--port", "0", "--volume", f"{VOLUME}={tmp_path / 'vol'}",
         "--data-center", "EU-RO-1", "--api-key", KEY, "--time-scale", "50", "--workdir", str(tmp_path / "work")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        exports = process.stdout.readline()
        url = first.split()[4]
        assert exports.startswith("export ") and f"HPO_RUNPOD_REST_URL={url}" in exports
        assert f"RUNPOD_API_BASE_URL={url}" in exports and "RUNPOD_API_URL=" not in exports
        sdk_hint = process.stdout.readline()
        assert sdk_hint.startswith("# runpod SDK") and "runpod.api_key" in sdk_hint
        assert f"RUNPOD_API_KEY={KEY}" in exports
        response = requests.get(f"{url}/v2/pods", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        assert CONTRACT.assert_response(response).json() == {"pods": []}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
