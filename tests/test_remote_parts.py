"""The parts of ``hpo run --remote`` one at a time: the bundle, the stop request, failed starts, the config.

The whole path (laptop, fake RunPod, controller pod) is tests/test_remote_controller.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest
from memory_volume import MemoryVolume

import hpo.agent.__main__ as agent_main
from hpo.backends.runpod import Pod
from hpo.config import load_study, study_document
from hpo.controller import STOPPED_BY_REQUEST, StopWatch, request_stop, withdraw_stop
from hpo.errors import ConfigError
from hpo.layout import StudyLayout
from hpo.lease import Lease
from hpo.remote import CONTROLLER_ENV, controller_env, make_bundle, read_bundle, secret_placeholder, write_bundle
from hpo.remote._pod import MAX_FAILED_STARTS, FailedStarts
from hpo.remote._stop import NONE_RUNNING, STOPPED, TERMINATED, TIMED_OUT, stop_controller

REPO = Path(__file__).resolve().parent.parent
CODE = "ab" * 32


def test_the_agent_and_the_launcher_agree_on_the_controllers_variable() -> None:
    assert agent_main.CONTROLLER_ENV == CONTROLLER_ENV


def test_a_bundle_holds_the_study_without_the_laptops_volume_keys_and_loads_on_the_pod(tmp_path: Path) -> None:
    document = study_document(REPO / "studies.yaml", "demo-pods")
    assert document["volume"]["local_path"] == "storage"
    bundle = make_bundle("demo-pods", document, CODE)
    assert "local_path" not in bundle.document["volume"]
    volume = MemoryVolume()
    sha = write_bundle(volume, bundle)
    assert sha == hashlib.sha256(volume.read_bytes(StudyLayout("demo-pods").controller_bundle(sha))).hexdigest()
    back = read_bundle(volume, "demo-pods", sha)
    assert back == bundle
    (tmp_path / "studies.yaml").write_text(back.studies_yaml("/workspace"))
    config = load_study(tmp_path / "studies.yaml", "demo-pods")
    assert str(config.volume.local_path) == "/workspace"  # type: ignore[union-attr]
    assert config.budget == load_study(REPO / "studies.yaml", "demo-pods").budget


def test_a_changed_bundle_is_refused_naming_its_key() -> None:
    volume = MemoryVolume()
    sha = write_bundle(volume, make_bundle("s", {"objective": "x", "volume": {"id": "v"}}, CODE))
    key = StudyLayout("s").controller_bundle(sha)
    tampered = json.loads(volume.read_bytes(key))
    tampered["document"]["objective"] = "evil"
    volume.write_bytes(key, json.dumps(tampered).encode())
    with pytest.raises(ConfigError, match=rf"{key} .* does not match its checksum"):
        read_bundle(volume, "s", sha)
    with pytest.raises(ConfigError, match="not a sha256"):
        read_bundle(volume, "s", "../../etc")
    with pytest.raises(ConfigError, match="not on memory://"):
        read_bundle(volume, "s", "cd" * 32)


def test_the_controller_pods_environment_names_the_secret_never_a_key() -> None:
    config = load_study(REPO / "studies.yaml", "demo-pods")
    env = controller_env(config, CODE)
    assert env == {
        "HPO_CONTROLLER": "demo-pods",
        "HPO_VOLUME": "/workspace",
        "HPO_CONTROLLER_BUNDLE": CODE,
        "HPO_RUNPOD_API_KEY": "{{ RUNPOD_SECRET_hpo_runpod_api_key }}",
    }
    assert secret_placeholder("k") == "{{ RUNPOD_SECRET_k }}"


@pytest.mark.parametrize(
    ("controller", "message"),
    [
        ("{cpu: cpu4c}", "key 'compute.controller.cpu': must be a RunPod CPU flavor"),
        ("{vcpus: 6}", "key 'compute.controller.vcpus': must be a power of two"),
        ("{secret: RUNPOD_key}", "key 'compute.controller.secret': must be a RunPod secret name"),
        ("{cpus: 2}", "compute.controller"),
    ],
)
def test_a_bad_controller_block_is_refused_naming_the_key(tmp_path: Path, controller: str, message: str) -> None:
    text = (REPO / "studies.yaml").read_text().replace(
        "      data_centers: [EU-RO-1]\n      cuda_versions: [\"12.4\", \"12.5\", \"12.6\", \"12.8\"]",
        f"      data_centers: [EU-RO-1]\n      cuda_versions: [\"12.4\"]\n      controller: {controller}",
    )
    (tmp_path / "studies.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_study(tmp_path / "studies.yaml", "demo-pods")


def test_a_stop_request_stops_only_the_controller_it_names() -> None:
    volume = MemoryVolume()
    ticks = itertools.count(step=100.0)
    lease = Lease(volume, "s", settle=0.0)
    lease.acquire()
    watch = StopWatch(volume, "s", lease, clock=lambda: next(ticks))
    assert watch.requested() is None
    other = Lease(volume, "s")
    holder = lease.current()
    assert holder is not None
    request_stop(volume, "s", holder.__class__(**{**holder.__dict__, "id": other.id}))
    assert watch.requested() is None  # an earlier controller's request, left behind
    request_stop(volume, "s", holder)
    assert watch.requested() == STOPPED_BY_REQUEST
    assert not volume.exists(StudyLayout("s").controller_stop)  # obeyed once, removed
    volume.write_bytes(StudyLayout("s").controller_stop, b'{"holder": 7}')
    assert watch.requested() is None  # junk from the volume stops nothing
    withdraw_stop(volume, "s")
    withdraw_stop(volume, "s")


def test_the_stop_file_is_read_at_most_every_check_interval() -> None:
    volume = MemoryVolume()
    now = [0.0]
    lease = Lease(volume, "s", settle=0.0)
    lease.acquire()
    watch = StopWatch(volume, "s", lease, every=10.0, clock=lambda: now[0])
    assert watch.requested() is None
    holder = lease.current()
    assert holder is not None
    request_stop(volume, "s", holder)
    now[0] = 5.0
    assert watch.requested() is None  # not looked at yet
    now[0] = 10.0
    assert watch.requested() == STOPPED_BY_REQUEST


def test_hpo_stop_of_a_controller_here_waits_for_its_lease_and_says_when_it_did_not_end() -> None:
    volume = MemoryVolume()
    assert stop_controller(volume, "s", None, timeout=5).how == NONE_RUNNING
    lease = Lease(volume, "s", settle=0.0)
    lease.acquire()
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 4 and lease.held:
            lease.release()  # the controller saw the request and ended

    outcome = stop_controller(volume, "s", None, timeout=60, clock=lambda: now[0], sleep=sleep)
    assert outcome.how == STOPPED and outcome.pod is None
    assert not volume.exists(StudyLayout("s").controller_stop)
    stuck = Lease(volume, "s", settle=0.0)
    stuck.acquire()
    now[0] = 0.0
    outcome = stop_controller(volume, "s", None, timeout=6, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert outcome.how == TIMED_OUT and not volume.exists(StudyLayout("s").controller_stop)


def test_failed_starts_are_counted_per_pod_and_bounded() -> None:
    volume = MemoryVolume()
    now = [1000.0]
    starts = FailedStarts(volume, "s", "pod1", clock=lambda: now[0])
    for _ in range(MAX_FAILED_STARTS - 1):
        starts.record()
    assert not starts.too_many()
    starts.record()
    assert starts.too_many()
    assert not FailedStarts(volume, "s", "pod2", clock=lambda: now[0]).too_many()  # another pod's
    now[0] += 3600
    assert not starts.too_many()  # long ago
    volume.write_bytes(StudyLayout("s").controller_restarts, b'{"pod": "pod1", "failures": [1e999, "x", true]}')
    assert not starts.too_many()


class _ControllerPods:
    """What stop_controller asks of the RunPod backend, for one controller pod that ignores the request."""

    def __init__(self, pod_id: str) -> None:
        self.pod_id = pod_id
        self.terminated: list[str] = []

    def controller_pods(self) -> list[Pod]:
        return [] if self.terminated else [Pod(self.pod_id, "hpo-s-controller", "running")]

    def controller_pod(self, pod_id: str) -> Pod | None:
        return None if self.terminated else Pod(pod_id, "hpo-s-controller", "running")

    def terminate_pod(self, pod_id: str) -> bool:
        self.terminated.append(pod_id)
        return True


def test_hpo_stop_terminates_a_controller_pod_that_does_not_end_in_time() -> None:
    volume = MemoryVolume()
    Lease(volume, "s", settle=0.0, pod="pod1").acquire()
    pods = _ControllerPods("pod1")
    now = [0.0]
    outcome = stop_controller(
        volume, "s", pods, timeout=30, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)  # type: ignore[arg-type]
    )
    assert (outcome.how, outcome.pod, pods.terminated) == (TERMINATED, "pod1", ["pod1"])
    assert outcome.holder == "the remote controller on pod pod1"
    assert not volume.exists(StudyLayout("s").controller_stop)


def test_hpo_stop_terminates_a_controller_pod_that_holds_no_lease() -> None:
    pods = _ControllerPods("pod2")  # starting, or failing to start: nothing to ask, so it is ended
    outcome = stop_controller(MemoryVolume(), "s", pods, timeout=30)  # type: ignore[arg-type]
    assert (outcome.how, pods.terminated) == (TERMINATED, ["pod2"])
