"""The RunPod backend against the fake over HTTP: one pod per attempt, duplicates surfaced, RunPod's clock read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpo.backends import AttemptRef
from hpo.backends.runpod import PodRequest, RunPodApi, RunPodBackend, pod_env, pod_name
from hpo.config import RunPodCompute, RunPodVolume
from hpo.errors import LaunchUnknownError
from hpo.fake_runpod import FakeRunPod
from hpo.volume import DirectoryVolume

from studyfiles import wait_for

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
