"""A controller driven one poll at a time, over a scripted backend, an in-memory volume and a real journal.

The controller's decisions (what reaches the study, when it prunes, when it
launches again) then take milliseconds to test and depend on nothing but the
script: no process runs, no clock ticks unless the test moves it. The worker
side is played by the test, which writes event files as an agent would and
says which workers are alive. The volume is a :class:`MemoryVolume` unless a
test asks for a folder (``Seam(..., volume="directory")``); the journal's
local cache is a real one, on tmpfs where there is one (it fsyncs every
flush, and a controller flushes several times a poll).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
from memory_volume import MemoryVolume
from optuna.trial import FrozenTrial, TrialState

from hpo.backends import AttemptRef, Backend, Billing, LaunchRate, WorkerHandle
from hpo.config import StudyConfig, load_study
from hpo.controller import Controller, ProgressSink, RunSummary
from hpo.errors import ApiUnavailableError
from hpo.journal import open_storage
from hpo.layout import StudyLayout
from hpo.lease import Lease
from hpo.volume import DirectoryVolume, Volume

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
    way an unreachable provider does. ``usd_per_hr`` is what each new worker
    bills (from ``clock()`` at its launch, when a clock is given), and what
    :meth:`launch_rate` quotes. ``on_launch`` runs after each successful
    launch, with the new handle: a test plays the worker there (writes its
    events, ends it).
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
    usd_per_hr: float = 0.0
    clock: Callable[[], float] | None = None
    on_launch: Callable[[WorkerHandle], None] | None = None

    def launch(self, ref: AttemptRef) -> WorkerHandle:
        started = self.clock() if self.clock is not None else None
        gpus = 1 if self.usd_per_hr else 0
        billing = Billing(usd_per_hr=self.usd_per_hr, gpu_count=gpus, started_at=started)
        handle = WorkerHandle(ref, f"w{len(self.launched)}", billing=billing)
        self.launched.append(ref)
        if self.launch_faults:
            error, made = self.launch_faults.pop(0)
            if made:
                self.alive[ref] = handle
            raise error
        self.alive[ref] = handle
        if self.on_launch is not None:
            self.on_launch(handle)
        return handle

    def launch_rate(self) -> LaunchRate:
        return LaunchRate(self.usd_per_hr, 1 if self.usd_per_hr else 0)

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
        volume: Literal["memory", "directory"] = "memory",
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "storage").mkdir(exist_ok=True)
        self.root = root
        self.cache_root = _cache_root(self, root)
        self._study: dict[str, object] = {
            "sampler": sampler, "pruner": pruner, "max_step": max_step, "trials": trials,
            "concurrency": concurrency, "max_attempts": max_attempts, "budget": budget,
        }
        self.config: StudyConfig = self.configure()
        self.clock = ManualClock()
        self.volume: Volume = (
            MemoryVolume(clock=self.clock) if volume == "memory" else DirectoryVolume(root / "storage")
        )
        self.layout = StudyLayout("seam")
        self.backend = ScriptedBackend(clock=self.clock)
        self.messages: list[str] = []
        self.controller = self.new_controller()

    def configure(self, **changes: object) -> StudyConfig:
        """Write studies.yaml anew with ``changes`` (the keys of :class:`Seam`'s study) and load it.

        The running controller keeps its config; the next one (:meth:`new_controller`,
        :meth:`crash_and_restart`) takes this one, as a user editing the file between runs.
        """
        unknown = set(changes) - set(self._study)
        assert not unknown, f"not a study key of the seam: {unknown}"
        self._study.update(changes)
        study = dict(self._study)
        study["budget"] = f", {study['budget']}" if study["budget"] else ""
        studies = self.root / "studies.yaml"
        studies.write_text(STUDY_YAML.format(**study))
        self.config = load_study(studies, "seam")
        return self.config

    def new_controller(self, cache: str = "cache") -> Controller:
        """A controller as a fresh `hpo run` would build it (the previous one crashed or ended)."""
        seam = self

        class Recorder(ProgressSink):
            def message(self, text: str) -> None:
                seam.messages.append(text)

        storage = open_storage(self.volume, "seam", writer=True, cache_dir=self.cache_root / cache)
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
            dashboard_plot=False,  # a second of plotly and pandas per run; tests/test_report.py covers the plot
        )

    def run(self) -> RunSummary:
        """``self.controller.run()`` (its controller pushes no dashboard plot: tests/test_report.py covers that)."""
        return self.controller.run()

    def crash_and_restart(self, cache: str = "cache-2") -> Controller:
        """The controller dies (its lease runs out unrenewed) and a new `hpo run` takes over."""
        self.clock.sleep(3600.0)
        self.controller = self.new_controller(cache=cache)
        self.controller.begin()
        return self.controller

    def trial(self, number: int) -> FrozenTrial:
        """Trial ``number`` as the study holds it now (read through a fresh study object, never the controller's cache)."""
        return self.study().trials[number]

    def study(self) -> optuna.Study:
        """The study as any reader of the journal sees it."""
        assert self.controller.study is not None, "begin() first"
        return optuna.load_study(
            study_name="seam", storage=self.controller.storage.optuna, sampler=optuna.samplers.RandomSampler()
        )

    def states(self) -> list[TrialState]:
        return [t.state for t in self.study().trials]

    def control(self, trial: int) -> dict[str, Any] | None:
        """The order ``control.json`` holds for ``trial`` (None: there is none)."""
        key = self.layout.control(trial)
        if not self.volume.exists(key):
            return None
        order = self.volume.read_json(key)
        assert isinstance(order, dict), order
        return order

    def write(self, trial: int, *events: dict[str, object], attempt: int = 0) -> None:
        """Append ``events`` to the attempt's event file, as its agent would."""
        self.volume.append_bytes(
            self.layout.events(trial, attempt), b"".join(json.dumps(e).encode() + b"\n" for e in events)
        )

    def reports(self, trial: int, values: dict[int, float], attempt: int = 0) -> None:
        self.write(trial, *({"type": "report", "step": s, "value": v} for s, v in values.items()), attempt=attempt)


def _cache_root(seam: Seam, root: Path) -> Path:
    """Where the seam's journal caches go: a folder of /dev/shm (removed with the seam) if it can be had, else ``root``."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return root
    try:
        folder = Path(tempfile.mkdtemp(prefix="hpo-seam-", dir=shm))
    except OSError:
        return root
    weakref.finalize(seam, shutil.rmtree, folder, ignore_errors=True)
    return folder
