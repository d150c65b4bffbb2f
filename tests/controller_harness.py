"""A controller driven one poll at a time, over a scripted backend, a folder volume and a real journal.

The controller's decisions (what reaches the study, when it prunes, when it
launches again) then take milliseconds to test and depend on nothing but the
script: no process runs, no clock ticks unless the test moves it. The worker
side is played by the test, which writes event files as an agent would and
says which workers are alive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hpo.backends import AttemptRef, Backend, Billing, WorkerHandle
from hpo.config import StudyConfig, load_study
from hpo.controller import Controller, ProgressSink
from hpo.errors import ApiUnavailableError
from hpo.journal import open_storage
from hpo.layout import StudyLayout
from hpo.lease import Lease
from hpo.volume import DirectoryVolume

STUDY_YAML = """
studies:
  seam:
    objective: steady
    search_space:
      x: {{type: float, low: 0.0, high: 1.0}}
    sampler: {sampler}
    pruner: {pruner}
    fidelity: {{max_step: {max_step}}}
    budget: {{trials: {trials}, concurrency: {concurrency}, max_attempts: {max_attempts}{budget}}}
    volume: {{path: storage}}
    poll_interval: 1
"""


class ManualClock:
    """A clock that moves only when the test moves it (also serves as the controller's sleep)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ScriptedBackend(Backend):
    """Workers that live exactly as long as the test says; every call is recorded.

    ``outage`` > 0 makes the next that many :meth:`list_live` calls fail the
    way an unreachable provider does.
    """

    name: str = "scripted"
    alive: dict[AttemptRef, WorkerHandle] = field(default_factory=dict)
    launched: list[AttemptRef] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    surplus: list[WorkerHandle] = field(default_factory=list)
    outage: int = 0
    listings: int = 0
    # Errors the next launches raise, in order; (error, True) means "raised, but the worker was made".
    launch_faults: list[tuple[Exception, bool]] = field(default_factory=list)

    def launch(self, ref: AttemptRef) -> WorkerHandle:
        handle = WorkerHandle(ref, f"w{len(self.launched)}", billing=Billing(usd_per_hr=0.0))
        self.launched.append(ref)
        if self.launch_faults:
            error, made = self.launch_faults.pop(0)
            if made:
                self.alive[ref] = handle
            raise error
        self.alive[ref] = handle
        return handle

    def list_live(self) -> dict[AttemptRef, WorkerHandle]:
        self.listings += 1
        if self.outage > 0:
            self.outage -= 1
            raise ApiUnavailableError("GET /v2/pods: 503 Service Unavailable", method="GET", path="/v2/pods", status=503)
        return dict(self.alive)

    def extras(self) -> list[WorkerHandle]:
        return [h for h in self.surplus if h.id not in self.terminated]

    def terminate(self, handle: WorkerHandle) -> None:
        self.terminated.append(handle.id)
        if self.alive.get(handle.ref) == handle:
            del self.alive[handle.ref]

    def gone(self, trial: int, attempt: int = 0) -> None:
        """The worker of ``trial``'s ``attempt`` ends (exits, is preempted, ...)."""
        self.alive.pop(AttemptRef(trial, attempt), None)


class Seam:
    """One study's controller, its scripted backend and the hand that writes its workers' events."""

    def __init__(
        self,
        root: Path,
        *,
        pruner: str = "{type: none}",
        sampler: str = "{type: random, seed: 1}",
        max_step: int = 5,
        trials: int = 3,
        concurrency: int = 1,
        max_attempts: int = 3,
        budget: str = "",
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "storage").mkdir(exist_ok=True)
        studies = root / "studies.yaml"
        studies.write_text(
            STUDY_YAML.format(
                sampler=sampler, pruner=pruner, max_step=max_step, trials=trials,
                concurrency=concurrency, max_attempts=max_attempts, budget=f", {budget}" if budget else "",
            )
        )
        self.root = root
        self.config: StudyConfig = load_study(studies, "seam")
        self.volume = DirectoryVolume(root / "storage")
        self.layout = StudyLayout("seam")
        self.backend = ScriptedBackend()
        self.clock = ManualClock()
        self.messages: list[str] = []
        self.controller = self.new_controller()

    def new_controller(self, cache: str = "cache") -> Controller:
        """A controller as a fresh `hpo run` would build it (the previous one crashed or ended)."""
        seam = self

        class Recorder(ProgressSink):
            def message(self, text: str) -> None:
                seam.messages.append(text)

        storage = open_storage(self.volume, "seam", writer=True, cache_dir=self.root / cache)
        return Controller(
            self.config,
            volume=self.volume,
            storage=storage,
            backend=self.backend,
            lease=Lease(self.volume, "seam", clock=self.clock, sleep=self.clock.sleep, settle=0.0),
            code_sha=None,
            progress=Recorder(),
            clock=self.clock,
            sleep=self.clock.sleep,
            wall_clock=self.clock,
        )

    def crash_and_restart(self, cache: str = "cache-2") -> Controller:
        """The controller dies (its lease runs out unrenewed) and a new `hpo run` takes over."""
        self.clock.sleep(3600.0)
        self.controller = self.new_controller(cache=cache)
        self.controller.begin()
        return self.controller

    def write(self, trial: int, *events: dict[str, object], attempt: int = 0) -> None:
        """Append ``events`` to the attempt's event file, as its agent would."""
        path = Path(self.volume.address) / self.layout.events(trial, attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(b"".join(json.dumps(e).encode() + b"\n" for e in events))

    def reports(self, trial: int, values: dict[int, float], attempt: int = 0) -> None:
        self.write(trial, *({"type": "report", "step": s, "value": v} for s, v in values.items()), attempt=attempt)
