"""The agent ends its own pod with the pod-scoped key: REST v2 first, then GraphQL ``podTerminate``, against the fake.

RunPod does not document what a pod's ``RUNPOD_API_KEY`` may call, so the
fake can refuse it on either API (``pod_key_rest`` / ``pod_key_graphql``);
with both refused, a spot pod's ``terminateAfter`` still ends it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fake_runpod_support.processes import started_fake

from hpo.backends.runpod import GRAPHQL_WAY, REST_WAY, end_pod, terminate_self
from hpo.fake_runpod import FakeRunPod

KEY = "test-key"
A5000 = "NVIDIA RTX A5000"


@pytest.fixture
def fake_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Overrides of the fake's settings (parametrize indirectly)."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def fake(tmp_path: Path, fake_options: dict[str, Any]) -> Iterator[FakeRunPod]:
    """A started fake whose pods sleep (unless ``pod_command`` is overridden)."""
    options: dict[str, Any] = {
        "api_keys": {KEY},
        "time_scale": 200.0,
        "provision_seconds": 5.0,
        "start_seconds": 5.0,
        "pod_command": [sys.executable, "-c", "import time; time.sleep(600)"],
        "workdir": tmp_path / "work",
    }
    with started_fake(**{**options, **fake_options}) as server:
        yield server


def spot_pod(fake: FakeRunPod, terminate_after: str | None = None) -> str:
    """A spot pod made through GraphQL (optionally with ``terminateAfter``); its id."""
    extra = f', terminateAfter: "{terminate_after}"' if terminate_after else ""
    query = (
        f'mutation {{ podRentInterruptable(input: {{bidPerGpu: 0.2, cloudType: SECURE, gpuCount: 1, gpuTypeId: "{A5000}", '
        f'name: "spot-1", imageName: "ghcr.io/example/hpo:1", dataCenterId: "EU-RO-1"{extra}}}) {{ id }} }}'
    )
    response = requests.post(
        fake.url + "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    )
    return response.json()["data"]["podRentInterruptable"]["id"]


def pod_env(fake: FakeRunPod, pod_id: str) -> dict[str, str]:
    """What the agent sees inside that pod: its id, its scoped key, the fake's URLs."""
    return {"RUNPOD_POD_ID": pod_id, "RUNPOD_API_KEY": fake.pod(pod_id).api_key, **{
        k: v for k, v in fake.client_env().items() if k != "RUNPOD_API_KEY"
    }}  # fmt: skip


def no_sleep(seconds: float) -> None:
    """Waiting is instant in these tests."""


def test_the_agent_ends_its_pod_through_rest_v2(fake: FakeRunPod, caplog: pytest.LogCaptureFixture) -> None:
    pod_id = spot_pod(fake)
    fake.wait_for(pod_id, "RUNNING")
    with caplog.at_level(logging.INFO, logger="hpo.backends.runpod._in_pod"):
        end_pod(pod_env(fake, pod_id), sleep=no_sleep, wait_limit=10.0)
    assert fake.pod(pod_id).status == "TERMINATED"
    (line,) = [r.getMessage() for r in caplog.records if r.name == "hpo.backends.runpod._in_pod"]
    assert f"terminated pod {pod_id} through {REST_WAY}" in line


@pytest.mark.parametrize("fake_options", [{"pod_key_rest": False}], indirect=True)
def test_refused_on_rest_the_agent_falls_back_to_graphql(fake: FakeRunPod, caplog: pytest.LogCaptureFixture) -> None:
    pod_id = spot_pod(fake)
    fake.wait_for(pod_id, "RUNNING")
    with caplog.at_level(logging.INFO, logger="hpo.backends.runpod._in_pod"):
        end_pod(pod_env(fake, pod_id), sleep=no_sleep, wait_limit=10.0)
    assert fake.pod(pod_id).status == "TERMINATED"
    (line,) = [r.getMessage() for r in caplog.records if r.name == "hpo.backends.runpod._in_pod"]
    assert f"through {GRAPHQL_WAY}" in line and "REST v2:" in line


@pytest.mark.parametrize("fake_options", [{"pod_key_rest": False, "pod_key_graphql": False}], indirect=True)
def test_refused_on_both_the_agent_waits_and_terminate_after_ends_the_pod(
    fake: FakeRunPod, caplog: pytest.LogCaptureFixture
) -> None:
    deadline = fake.clock.to_datetime(fake.now() + 400.0).isoformat()
    pod_id = spot_pod(fake, terminate_after=deadline)
    fake.wait_for(pod_id, "RUNNING")
    waits: list[float] = []
    with caplog.at_level(logging.INFO, logger="hpo.backends.runpod._in_pod"):
        end_pod(pod_env(fake, pod_id), sleep=waits.append, wait_limit=20.0)
    assert waits == [5.0] * 4  # it waited (bounded) instead of exiting into a restart
    (line,) = [r.getMessage() for r in caplog.records if r.name == "hpo.backends.runpod._in_pod"]
    assert "could not terminate itself" in line and "REST v2:" in line and "GraphQL:" in line
    assert fake.pod(pod_id).status == "RUNNING"
    view = fake.wait_for(pod_id, "TERMINATED", timeout=120.0)  # RunPod's own deadline
    assert view.stop_reason == "terminateAfter"


def test_a_pod_key_may_not_terminate_another_pod(fake: FakeRunPod) -> None:
    mine, other = spot_pod(fake), spot_pod(fake)
    env = {**pod_env(fake, mine), "RUNPOD_POD_ID": other}
    fake.set_pod_key_access(rest=False)
    how, failures = terminate_self(env, sleep=no_sleep)
    assert how is None and any("GraphQL: access denied" in failure for failure in failures)
    assert fake.pod(other).status != "TERMINATED"


@pytest.mark.parametrize(
    "fake_options",
    [{"pod_key_rest": False, "pod_command": [sys.executable, "-c", "import os; from hpo.backends.runpod import end_pod; end_pod(os.environ)"]}],
    indirect=True,
)  # fmt: skip
def test_inside_a_pod_the_agent_ends_it_through_graphql(fake: FakeRunPod) -> None:
    pod_id = spot_pod(fake)
    view = fake.wait_for(pod_id, "TERMINATED", timeout=120.0)
    assert view.stop_reason == "terminated" and view.restarts == 0
