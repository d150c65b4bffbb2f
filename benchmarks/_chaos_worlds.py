"""Where a chaos run's workers live, and how the harness hurts them: the fake RunPod, or local processes.

Both worlds answer the same questions (which workers of the study are alive,
what is left at the end, what the provider billed) and deliver the same
faults where they make sense: a preemption (the fake's spot preemption:
SIGTERM, SIGKILL 5 fake seconds later; locally SIGTERM, SIGKILL 5 s later),
a worker SIGKILLed (on the fake the pod's container, which RunPod restarts;
locally the trial's process group). Deletes through the API and API faults
exist on the fake only.

Warm workers (the default) run attempt after attempt: which attempt a worker
runs now is read from the worker logs on the volume (:func:`running_attempts`),
and a fault aimed at an attempt hits the worker under it (its pod, its
process group), as a preemption would.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

from hpo.backends.runpod import parse_pod_name, parse_worker_pod_name
from hpo.fake_runpod import FAULT_KINDS, FakeRunPod
from hpo.layout import StudyLayout
from hpo.pool import WORKER_LOG_ENTRY, EndEntry, StartEntry, parse_worker_index, worker_log_key, workers_dir
from hpo.volume import DirectoryVolume, Volume

Ref = tuple[int, int]
"""(trial, attempt)."""

VOLUME_ID = "chaosvol01"
DATA_CENTER = "EU-RO-1"
GPU_TYPE = "NVIDIA H100 80GB HBM3"
"""Spot $1.50/h on the fake: dear enough that a meter off by one real second at 20x shows in cents."""
TIME_SCALE = 20.0
LIVE_STATUSES = ("PROVISIONING", "STARTING", "RUNNING")
HTTP_DEADLINE = 60.0
"""Real seconds the harness keeps retrying its own API calls through faults (429, 5xx) it injected."""


def running_attempts(volume: Volume, study: str) -> dict[Ref, int]:
    """The attempts warm workers run now, by the workers' own logs: the index of the worker under each.

    An attempt runs from its worker's ``start`` entry to its ``end``; a worker
    that died mid-attempt leaves a ``start`` alone, so the caller also checks
    that the worker lives.
    """
    found: dict[Ref, int] = {}
    indices = {
        index
        for info in volume.list(workers_dir(study) + "/")
        if (index := parse_worker_index(info.key[len(workers_dir(study)) + 1 :].split("/", 1)[0])) is not None
    }
    for index in indices:
        try:
            lines = volume.read_bytes(worker_log_key(study, index)).splitlines()
        except Exception:  # noqa: BLE001  no log yet (a worker still booting): it runs nothing yet
            continue
        current: Ref | None = None
        for line in lines:
            try:
                entry = WORKER_LOG_ENTRY.validate_json(line)
            except ValueError:
                continue  # a torn last line: read whole next time
            if isinstance(entry, StartEntry):
                current = (entry.trial, entry.attempt)
            elif isinstance(entry, EndEntry):
                current = None
        if current is not None:
            found[current] = index
    return found


@dataclass(frozen=True)
class Worker:
    """A live worker of one attempt: a pod id or a pid, and whether its process runs now."""

    ref: Ref
    id: str
    running: bool


class FakeWorld:
    """The study's pods on a fake RunPod started by the harness (in this process, on loopback)."""

    name = "runpod"

    def __init__(self, study: str, volume_dir: Path, workdir: Path, seed: int, cache_dir: Path) -> None:
        self.study = study
        self.volume = DirectoryVolume(volume_dir)
        # The pods' agent unpacks the code snapshot into a cache: keep it in the run's folder, not ~/.cache.
        # A pod inherits only PATH, HOME and LANG; PYTHONPATH goes along so a harness run against
        # another checkout of hpo (PYTHONPATH=...) runs that checkout's agent in the pods too.
        extra = [f"PYTHONPATH={os.environ['PYTHONPATH']}"] if os.environ.get("PYTHONPATH") else []
        pod_command = ["/usr/bin/env", f"HPO_CACHE_DIR={cache_dir}", *extra, sys.executable, "-m", "hpo.agent"]
        self.fake = FakeRunPod(
            volumes={VOLUME_ID: volume_dir},
            volume_data_center=DATA_CENTER,
            time_scale=TIME_SCALE,
            seed=seed,
            balance_usd=10_000.0,
            workdir=workdir,
            pod_command=pod_command,
        ).start()

    def env(self) -> dict[str, str]:
        """What points `hpo run` at the fake."""
        return self.fake.client_env()

    def volume_yaml(self, volume_dir: Path) -> dict[str, Any]:
        return {"id": VOLUME_ID, "data_center": DATA_CENTER, "local_path": str(volume_dir)}

    def compute_yaml(self) -> dict[str, Any]:
        return {
            "backend": "runpod",
            "image": "runpod-hpo/trial:chaos",
            "gpu_types": [GPU_TYPE],
            "cloud": "SECURE",
            "spot": True,
            "data_centers": [DATA_CENTER],
            "cuda_versions": ["12.4"],
        }

    def watch(self, refs: list[Ref]) -> None:
        """Nothing to learn from the volume: the fake lists its pods."""

    def _pods(self) -> dict[Ref, Any]:
        found: dict[Ref, Any] = {}
        warm: dict[int, Any] = {}
        for view in self.fake.pods(include_terminated=False):
            if view.status not in LIVE_STATUSES:
                continue
            ref = parse_pod_name(self.study, view.name)
            if ref is not None:
                found.setdefault((ref.trial, ref.attempt), view)  # the oldest pod of a name
            index = parse_worker_pod_name(self.study, view.name)
            if index is not None:
                warm.setdefault(index, view)
        if warm:
            for ref, index in running_attempts(self.volume, self.study).items():
                if index in warm:
                    found.setdefault(ref, warm[index])
        return found

    def workers(self) -> dict[Ref, Worker]:
        """Live pods of the study, by attempt."""
        return {ref: Worker(ref, v.id, v.status == "RUNNING" and v.pid is not None) for ref, v in self._pods().items()}

    def preempt(self, worker: Worker) -> bool:
        """A spot preemption of the pod, now."""
        try:
            self.fake.preempt(worker.id)
        except (KeyError, ValueError):
            return False
        return True

    def kill(self, worker: Worker) -> bool:
        """SIGKILL the pod's container (``POST /_fake/pods/{id}/kill``); RunPod restarts it."""
        return self._control("POST", f"/_fake/pods/{worker.id}/kill") is not None

    def delete(self, worker: Worker) -> bool:
        """``DELETE /v2/pods/{id}`` with the account's key, as a user cleaning up by hand would."""
        return self._api("DELETE", f"/v2/pods/{worker.id}") is not None

    def api_fault(self, kind: str, seconds: float) -> str | None:
        """Arm a fault: one create-then-500, or a burst of 429s / 5xx for ``seconds`` fake seconds; the kind armed."""
        if kind not in FAULT_KINDS:  # a fake without GET-only faults: an outage of the whole API instead
            kind = "server_error"
        body = {"kind": kind, "times": 0 if seconds > 0 else 1, "seconds": seconds}
        return kind if self._control("POST", "/_fake/faults", json=body) is not None else None

    def live_left(self) -> list[str]:
        """Pods of the study ``GET /v2/pods`` still shows live, as ``pod <id> (<name>, <status>)``."""
        return [f"pod {p['id']} ({p['name']}, {p['status']})" for p in self._listed() if p["status"] in LIVE_STATUSES]

    def exited_left(self) -> int:
        """Pods of the study that exited (preempted) and were never terminated: listed, billing nothing here."""
        return sum(p["status"] == "EXITED" for p in self._listed())

    def _listed(self) -> list[dict[str, Any]]:
        body = self._api("GET", "/v2/pods")
        if body is None:
            raise RuntimeError("GET /v2/pods never answered")
        pods = body if isinstance(body, list) else body.get("pods", [])
        return [
            p for p in pods
            if parse_pod_name(self.study, p.get("name", "")) is not None
            or parse_worker_pod_name(self.study, p.get("name", "")) is not None
        ]

    def bill_usd(self) -> float:
        """The account's pod charges (``GET /v2/billing/pods``, the last 30 days by day): the fake runs only this study."""
        body = self._api("GET", "/v2/billing/pods", params={"bucketSize": "day"})
        if body is None:
            raise RuntimeError("GET /v2/billing/pods never answered")
        return sum(float(r.get("totalAmount", 0.0)) for r in body.get("records", []))

    def duplicate_pods(self) -> int:
        """Attempts that had two pods or more (two creates for one name)."""
        names: dict[str, int] = {}
        for view in self.fake.pods(include_terminated=True):
            names[view.name] = names.get(view.name, 0) + 1
        return sum(1 for n in names.values() if n > 1)

    def settle(self, deadline: float) -> None:
        """Give pods that end themselves (their attempt over, a warm worker idle) until ``deadline`` (monotonic) to go."""
        while (self._pods() or self.live_left()) and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        self.fake.stop()

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One account-key call, retried through the 429s and 5xx the harness itself injected."""
        headers = {"Authorization": f"Bearer {self.fake.api_key}"}
        return _retrying(lambda: requests.request(method, self.fake.url + path, headers=headers, timeout=10, **kwargs))

    def _control(self, method: str, path: str, **kwargs: Any) -> Any:
        """One ``/_fake`` control call: those routes take the account's key and JSON."""
        headers = {"Authorization": f"Bearer {self.fake.api_key}", "Content-Type": "application/json"}
        return _retrying(lambda: requests.request(method, self.fake.url + path, headers=headers, timeout=10, **kwargs))


def _retrying(call: Callable[[], requests.Response]) -> Any:
    """The JSON of a 2xx answer (``{}`` for 204); None for a 4xx refusal (the pod is gone: nothing to do)."""
    deadline = time.monotonic() + HTTP_DEADLINE
    while True:
        try:
            response = call()
        except requests.RequestException:
            response = None
        if response is not None and response.status_code < 400:
            return response.json() if response.content else {}
        if response is not None and response.status_code < 500 and response.status_code != 429:
            return None
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


class LocalWorld:
    """The study's trial processes on this machine (``compute: local``)."""

    name = "local"
    kill_grace = 5.0

    def __init__(self, study: str, volume: Volume) -> None:
        self.study = study
        self.volume = volume
        self.layout = StudyLayout(study)
        self._launches: dict[Ref, tuple[int, float]] = {}
        self._warm: dict[Ref, bool] = {}  # whether a warm worker runs the attempt (its pid is the worker's)
        self._kill_at: dict[int, float] = {}  # pid -> when the preempted process gets SIGKILL

    def env(self) -> dict[str, str]:
        return {}

    def volume_yaml(self, volume_dir: Path) -> dict[str, Any]:
        return {"path": str(volume_dir)}

    def compute_yaml(self) -> dict[str, Any]:
        return {"backend": "local"}

    def _launch(self, ref: Ref) -> tuple[int, float] | None:
        """The pid and start time the controller recorded for the attempt (``launch.json``)."""
        if ref not in self._launches:
            key = self.layout.launch(*ref)
            if not self.volume.exists(key):
                return None
            try:
                raw = self.volume.read_json(key)
                self._launches[ref] = (int(raw["pid"]), float(raw["create_time"]))
                self._warm[ref] = raw.get("worker") is not None
            except (KeyError, TypeError, ValueError):
                return None
        return self._launches[ref]

    def watch(self, refs: list[Ref]) -> None:
        """Attempts the volume shows; their launch records are read once each."""
        for ref in refs:
            self._launch(ref)

    def workers(self) -> dict[Ref, Worker]:
        """Attempts whose recorded process is alive (same pid, same start time, not a zombie).

        For an attempt on a warm worker that process is the worker's, which
        outlives the attempt: it counts only while the worker's log says the
        attempt runs on it.
        """
        self._escalate()
        found: dict[Ref, Worker] = {}
        warm = running_attempts(self.volume, self.study)
        for ref, (pid, created) in self._launches.items():
            if self._warm.get(ref) and ref not in warm:
                continue
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.NoSuchProcess:
                continue
            found[ref] = Worker(ref, str(pid), True)
        return found

    def preempt(self, worker: Worker) -> bool:
        """SIGTERM to the trial's group, SIGKILL 5 s later if it still runs: a spot preemption, locally."""
        if not _signal_group(int(worker.id), signal.SIGTERM):
            return False
        self._kill_at[int(worker.id)] = time.monotonic() + self.kill_grace
        return True

    def kill(self, worker: Worker) -> bool:
        """SIGKILL the trial's process group."""
        return _signal_group(int(worker.id), signal.SIGKILL)

    def delete(self, worker: Worker) -> bool:
        return False

    def api_fault(self, kind: str, seconds: float) -> str | None:
        return None

    def _escalate(self) -> None:
        for pid, due in list(self._kill_at.items()):
            if time.monotonic() >= due:
                _signal_group(pid, signal.SIGKILL)
                del self._kill_at[pid]

    def live_left(self) -> list[str]:
        """Every live process whose environment says it runs a trial of this study on this volume."""
        found = []
        for proc in psutil.process_iter(["pid", "status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                env = proc.environ()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if env.get("HPO_STUDY") == self.study and env.get("HPO_VOLUME") == self.volume.address:
                found.append(f"pid {proc.info['pid']} (trial {env.get('HPO_TRIAL')} attempt {env.get('HPO_ATTEMPT')})")
        return found

    def bill_usd(self) -> float | None:
        return None

    def duplicate_pods(self) -> int:
        return 0

    def exited_left(self) -> int:
        return 0

    def settle(self, deadline: float) -> None:
        while self.live_left() and time.monotonic() < deadline:
            time.sleep(0.2)

    def close(self) -> None:
        """SIGKILL whatever trial process is left (after the census counted it)."""
        for entry in self.live_left():
            pid = int(entry.split()[1])
            _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, signum: int) -> bool:
    """Signal the process group led by ``pid`` (a trial runs in its own session); False if it is gone."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True
