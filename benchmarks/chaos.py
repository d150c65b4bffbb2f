"""Chaos harness: a study under preemptions, controller SIGKILLs and RunPod API faults, then a census.

It runs a small study (the demo objective ``digits_mlp``, 10 epochs, a median
pruner, a seeded TPE sampler, up to 8 attempts a trial) on a fake RunPod
started here (default) or as local processes (``--backend local``), with a
fault plan drawn from ``--seed``:

* attempts preempted (a share of them, ``--preempt-rate``), each early in its run;
* ``hpo run`` SIGKILLed at ``--controller-kills`` moments and started again, as a user would;
* workers SIGKILLed (``--worker-kills``): the pod's container (RunPod restarts it), locally the trial process;
* on the fake only: pods deleted through the API (``--deletes``) and API faults
  (``--api-faults``): create-then-500, bursts of 429, 5xx outages of fake minutes.

Moments are counted in reports written to the volume, not in wall time, so a
seed gives the same plan on any machine. ``hpo run`` is a real subprocess
(``python -m hpo run --study chaos --studies <tmp>/studies.yaml --json``) with
its own cache dir (``HPO_CACHE_DIR``); the volume is a temporary folder, never
the repo's ``storage/``. When the plan is spent, ``hpo run`` is started again
until the study is finished. Then the census (see ``_chaos_census.py``) prints
one table, and the exit code says whether every invariant held:

    0  nothing lost, nothing discarded, no duplicated step, no live worker,
       no trial stuck RUNNING, the study finished, cost = bill to the cent (fake)
    1  an invariant broke (each broken one is printed)
    2  the harness itself could not run (bad arguments, setup failed)

Usage::

    python benchmarks/chaos.py --short --seed 1            # ~12 trials, 1 controller kill: about a minute
    python benchmarks/chaos.py --seed 7                    # 50 trials, 30 % preempted, 3 controller kills
    python benchmarks/chaos.py --backend local --short     # the same on local processes
    python benchmarks/chaos.py --short --json              # the census as JSON on stdout

Progress lines (each fault as it is delivered) go to stderr; ``--keep``
keeps the run's folder (volume, controller logs, pod logs) for a post-mortem.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from rich.console import Console

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the helper modules beside this file, when imported from a test

from _chaos_census import Census, build_census, render  # noqa: E402
from _chaos_plan import (  # noqa: E402
    API_FAULTS,
    CONTROLLER_KILL,
    DELETE,
    WORKER_KILL,
    Moment,
    Plan,
    make_plan,
)
from _chaos_worlds import FakeWorld, LocalWorld, Ref, Worker  # noqa: E402

from hpo.events import EventTail, ReportEvent  # noqa: E402
from hpo.layout import StudyLayout  # noqa: E402
from hpo.volume import DirectoryVolume, Volume  # noqa: E402

REPO = HERE.parent
FAULT_WORDS = {
    "list_error": "5xx on GET /v2/pods",
    "rate_limit": "429 on every call",
    "server_error": "5xx on every call (an outage)",
    "create_then_500": "the next create makes the pod, then answers 500",
}
STUDY = "chaos"
MAX_ATTEMPTS = 8
TICK = 0.1
"""Real seconds between two looks at the volume and the workers."""
RESTART_WAIT_MAX = 5.0
"""Real seconds a killed controller stays down at most (if the workers write no report meanwhile)."""
CRASH_PAUSE = 1.0
"""Real seconds before `hpo run` is started again after it exited on its own, as a user would."""
MAX_CONTROLLER_RUNS = 40
SETTLE_SECONDS = 15.0
"""Real seconds a worker whose trial is over gets to end itself before the census counts it as left over."""

SEARCH_SPACE = {  # the demo's (studies.yaml): epochs of 0.05 to 0.5 s, so polls see one step or several
    "lr": {"type": "float", "low": 1.0e-3, "high": 1.0, "log": True},
    "hidden": {"type": "int", "low": 32, "high": 512, "step": 32},
    "depth": {"type": "int", "low": 1, "high": 3},
    "weight_decay": {"type": "float", "low": 1.0e-6, "high": 1.0e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
    "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
}


class World(Protocol):
    """What the harness needs of a backend (see ``_chaos_worlds.py``)."""

    name: str

    def env(self) -> dict[str, str]: ...
    def watch(self, refs: list[Ref]) -> None: ...
    def volume_yaml(self, volume_dir: Path) -> dict[str, Any]: ...
    def compute_yaml(self) -> dict[str, Any]: ...
    def workers(self) -> dict[Ref, Worker]: ...
    def preempt(self, worker: Worker) -> bool: ...
    def kill(self, worker: Worker) -> bool: ...
    def delete(self, worker: Worker) -> bool: ...
    def api_fault(self, kind: str, seconds: float) -> str | None: ...
    def live_left(self) -> list[str]: ...
    def bill_usd(self) -> float | None: ...
    def duplicate_pods(self) -> int: ...
    def exited_left(self) -> int: ...
    def settle(self, deadline: float) -> None: ...
    def close(self) -> None: ...


# -- the command line ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The harness's options; ``--short`` sets the defaults of the test suite's form."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/chaos.py",
        description="Run a study under a seeded fault plan, then check that nothing was lost, "
        "discarded, duplicated, left running or paid twice.",
    )
    parser.add_argument("--backend", choices=("runpod", "local"), default="runpod",
                        help="runpod: pods on a fake RunPod started here (default); local: trial processes")
    parser.add_argument("--seed", type=int, default=0, help="seeds the fault plan, the sampler and the fake (default 0)")
    parser.add_argument("--short", action="store_true",
                        help="the test suite's form: 12 trials, 1 controller kill, 1 of each other fault")
    parser.add_argument("--trials", type=int, default=None, help="budget.trials (default 50; 12 with --short)")
    parser.add_argument("--concurrency", type=int, default=3, help="budget.concurrency (default 3)")
    parser.add_argument("--max-step", type=int, default=10, help="epochs per trial (default 10)")
    parser.add_argument("--preempt-rate", type=float, default=0.3, help="share of attempts preempted (default 0.3)")
    parser.add_argument("--controller-kills", type=int, default=None, help="SIGKILLs of `hpo run` (default 3; 1 with --short)")
    parser.add_argument("--api-faults", type=int, default=None,
                        help="RunPod API faults: 5xx outage, 429 burst, create-then-500 in turn (default 6; 3 with --short)")
    parser.add_argument("--deletes", type=int, default=None, help="pods deleted through the API (default 3; 1 with --short)")
    parser.add_argument("--worker-kills", type=int, default=None, help="workers SIGKILLed (default 3; 1 with --short)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="real seconds before the run is called stuck (default 1500; 300 with --short)")
    parser.add_argument("--json", action="store_true", help="print the census as JSON instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (volume, logs) and print where")
    return parser


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that depend on ``--short`` and the backend."""
    short = args.short
    for name, full, small in (
        ("trials", 50, 12), ("controller_kills", 3, 1), ("api_faults", 6, 3), ("deletes", 3, 1),
        ("worker_kills", 3, 1), ("timeout", 1500.0, 300.0),
    ):
        if getattr(args, name) is None:
            setattr(args, name, small if short else full)
    if args.backend == "local":
        args.api_faults, args.deletes = 0, 0  # no API between the controller and local processes
    return args


# -- the workspace -------------------------------------------------------------------------


def study_entry(args: argparse.Namespace, world: World, volume_dir: Path) -> dict[str, Any]:
    """The chaos study's entry in studies.yaml: quick trials, a pruner, enough attempts to outlast preemptions."""
    return {
        "objective": "digits_mlp",
        "search_space": SEARCH_SPACE,
        "sampler": {"type": "tpe", "seed": args.seed, "n_startup_trials": 4, "constant_liar": True},
        "pruner": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 2},
        "fidelity": {"max_step": args.max_step},
        "compute": world.compute_yaml(),
        "budget": {"trials": args.trials, "concurrency": args.concurrency, "max_attempts": MAX_ATTEMPTS},
        "volume": world.volume_yaml(volume_dir),
        "poll_interval": 0.2,
    }


def write_project(project: Path, entry: dict[str, Any], study: str = STUDY) -> Path:
    """A project folder: studies.yaml with one study (the chaos study), and objectives/ with the demo objective."""
    objectives = project / "objectives"
    objectives.mkdir(parents=True)
    (objectives / "__init__.py").write_text("")
    shutil.copy(REPO / "objectives" / "digits_mlp.py", objectives / "digits_mlp.py")
    studies = project / "studies.yaml"
    studies.write_text(yaml.safe_dump({"studies": {study: entry}}, sort_keys=False))
    return studies


# -- the controller ------------------------------------------------------------------------


@dataclass
class RunRecord:
    """One `hpo run`: how it ended, and its --json summary when it printed one."""

    index: int
    seconds: float
    rc: int
    killed: bool
    summary: dict[str, Any] | None


class ControllerRuns:
    """`hpo run` as a real subprocess, started again after each kill; every run recorded, its output logged."""

    def __init__(self, studies: Path, env: dict[str, str], logs: Path) -> None:
        self.argv = [sys.executable, "-m", "hpo", "run", "--study", STUDY, "--studies", str(studies), "--json"]
        self.env = env
        self.cwd = studies.parent
        self.logs = logs
        self.records: list[RunRecord] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the next run; its stdout (the JSON summary) and stderr go to logs/hpo-run-<n>.{out,err}."""
        n = len(self.records)
        with open(self.logs / f"hpo-run-{n}.out", "wb") as out, open(self.logs / f"hpo-run-{n}.err", "wb") as err:
            self._proc = subprocess.Popen(  # from the project folder, as a user runs it
                self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
        self._started = time.monotonic()

    def poll(self) -> RunRecord | None:
        """The record of the run if it just ended on its own, else None."""
        if self._proc is None or self._proc.poll() is None:
            return None
        return self._record(killed=False)

    def kill(self) -> RunRecord:
        """SIGKILL the run (no handler, no cleanup: a crash, a lost laptop) and reap it."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait()
        return self._record(killed=True)

    def stop(self) -> None:
        """Kill a run still going when the harness gives up (deadline, Ctrl-C)."""
        if self.alive:
            self.kill()

    def stderr_tail(self, index: int, lines: int = 8) -> str:
        path = self.logs / f"hpo-run-{index}.err"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def _record(self, *, killed: bool) -> RunRecord:
        assert self._proc is not None
        n = len(self.records)
        summary = None
        out = (self.logs / f"hpo-run-{n}.out").read_text(errors="replace").strip()
        if out and not killed:
            try:
                summary = json.loads(out)
            except ValueError:
                summary = None
        record = RunRecord(n, time.monotonic() - self._started, self._proc.returncode, killed, summary)
        self.records.append(record)
        self._proc = None
        return record


def study_finished(summary: dict[str, Any] | None, trials: int) -> bool:
    """What a user reads in the last line: every trial of the budget finished, none running."""
    if not summary:
        return False
    done = int(summary.get("complete", 0)) + int(summary.get("pruned", 0)) + int(summary.get("failed", 0))
    return done >= trials and int(summary.get("running", 0)) == 0


# -- watching the volume -------------------------------------------------------------------


class VolumeWatch:
    """Reports each attempt has written so far: the clock the fault plan runs on."""

    def __init__(self, volume: Volume, study: str) -> None:
        self.volume = volume
        self.layout = StudyLayout(study)
        self.tails: dict[Ref, EventTail] = {}
        self.reports: dict[Ref, int] = {}
        self.total = 0

    def poll(self) -> None:
        """Read what every event file gained since the last look (one listing, then only the new bytes)."""
        for info in self.volume.list(self.layout.trials_dir):
            if not info.key.endswith("/events.jsonl"):
                continue
            parts = info.key.split("/")
            ref = (int(parts[-4]), int(parts[-2]))
            tail = self.tails.setdefault(ref, EventTail(self.volume, info.key))
            for event in tail.poll(info.size):
                if isinstance(event, ReportEvent):
                    self.reports[ref] = self.reports.get(ref, 0) + 1
                    self.total += 1


# -- the run -------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the harness did, for the census."""

    preemptions: int = 0
    worker_kills: int = 0
    deletes: int = 0
    controller_kills: int = 0
    api_faults: dict[str, int] = field(default_factory=dict)
    crash_codes: list[int] = field(default_factory=list)
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)


class Chaos:
    """Drives one run: the controller, the plan's faults at their moments, until the study is finished."""

    def __init__(
        self, plan: Plan, world: World, watch: VolumeWatch, runs: ControllerRuns, trials: int,
        deadline: float, say: Callable[[str], None],
    ) -> None:
        self.plan = plan
        self.world = world
        self.watch = watch
        self.runs = runs
        self.trials = trials
        self.deadline = deadline
        self.say = say
        self.tally = Tally()
        self.pending: list[Moment] = list(plan.moments)
        self.preempted: set[Ref] = set()
        self.restart_when: tuple[int, float] | None = (0, 0.0)  # (reports, monotonic): start when either is reached

    def run(self) -> Tally:
        """Tick until `hpo run` says the study is finished, or the deadline passes."""
        try:
            while not self._tick():
                if time.monotonic() > self.deadline:
                    self.tally.timed_out = True
                    self.say("deadline reached: stopping `hpo run` and taking the census as things are")
                    break
                time.sleep(TICK)
        finally:
            self.runs.stop()
        for moment in self.pending:
            self.tally.notes.append(f"not delivered (the study finished first): {moment.kind} at {moment.at_reports} reports")
        return self.tally

    def _tick(self) -> bool:
        """One look: True once the study is finished."""
        self.watch.poll()
        self.world.watch(list(self.watch.tails))
        ended = self.runs.poll()
        if ended is not None and self._ended(ended):
            return True
        if not self.runs.alive and self._restart_due():
            if len(self.runs.records) >= MAX_CONTROLLER_RUNS:
                self.tally.notes.append(f"gave up after {MAX_CONTROLLER_RUNS} runs of `hpo run`")
                self.tally.timed_out = True
                return True
            self.runs.start()
            self.restart_when = None
        workers = self.world.workers()
        self._fates(workers)
        self._moments(workers)
        return False

    def _ended(self, record: RunRecord) -> bool:
        """A run ended on its own: finished, or started again after a pause, as a user would."""
        if record.rc == 0 and study_finished(record.summary, self.trials):
            self.say(f"hpo run #{record.index} finished the study ({_summary_line(record.summary)})")
            return True
        if record.rc != 0:
            self.tally.crash_codes.append(record.rc)
            tail = self.runs.stderr_tail(record.index).replace("\n", "\n    ")
            self.say(f"hpo run #{record.index} died on its own (exit {record.rc}) after {record.seconds:.1f}s:\n    {tail}")
        else:
            self.say(f"hpo run #{record.index} exited 0 with the study unfinished ({_summary_line(record.summary)})")
        self.restart_when = (0, time.monotonic() + CRASH_PAUSE)
        return False

    def _restart_due(self) -> bool:
        if self.restart_when is None:
            return True
        reports, at = self.restart_when
        due = (reports and self.watch.total >= reports) or time.monotonic() >= at
        if due and self.runs.records:
            self.say(f"starting hpo run #{len(self.runs.records)} ({self.watch.total} reports written so far)")
        return bool(due)

    def _fates(self, workers: dict[Ref, Worker]) -> None:
        """Preempt each attempt whose fate is due (its own reports reached ``preempt_after``)."""
        for ref, worker in sorted(workers.items()):
            if ref in self.preempted or not worker.running:
                continue
            fate = self.plan.fate(*ref)
            if fate.preempt_after is None or self.watch.reports.get(ref, 0) < fate.preempt_after:
                continue
            self.preempted.add(ref)
            if self.world.preempt(worker):
                self.tally.preemptions += 1
                self.say(f"preempted trial {ref[0]} attempt {ref[1]} ({worker.id}) after {fate.preempt_after} report(s)")

    def _moments(self, workers: dict[Ref, Worker]) -> None:
        """Deliver every due moment that can be delivered now; the rest wait for their chance."""
        for moment in [m for m in self.pending if m.at_reports <= self.watch.total]:
            if self._deliver(moment, workers):
                self.pending.remove(moment)

    def _deliver(self, moment: Moment, workers: dict[Ref, Worker]) -> bool:
        if moment.kind == CONTROLLER_KILL:
            return self._kill_controller(moment)
        if moment.kind in (WORKER_KILL, DELETE):
            running = moment.kind == WORKER_KILL
            targets = [w for _, w in sorted(workers.items()) if w.running or not running]
            if not targets:
                return False
            worker = targets[min(len(targets) - 1, int(moment.pick * len(targets)))]
            hit = self.world.kill(worker) if running else self.world.delete(worker)
            if hit:
                what = "SIGKILLed the worker of" if running else "deleted the pod of"
                self.say(f"{what} trial {worker.ref[0]} attempt {worker.ref[1]} ({worker.id}) at {self.watch.total} reports")
                if running:
                    self.tally.worker_kills += 1
                else:
                    self.tally.deletes += 1
            return hit
        if moment.kind in API_FAULTS:
            kind = self.world.api_fault(moment.kind, moment.seconds)
            if kind is not None:
                self.tally.api_faults[kind] = self.tally.api_faults.get(kind, 0) + 1
                span = f" for {moment.seconds:.0f} fake seconds" if moment.seconds else ""
                self.say(f"RunPod API fault: {FAULT_WORDS.get(kind, kind)}{span} at {self.watch.total} reports")
            return True
        raise ValueError(f"unknown moment kind {moment.kind!r}")

    def _kill_controller(self, moment: Moment) -> bool:
        if not self.runs.alive:
            return False  # down already (killed, or died): the kill waits for the next run
        record = self.runs.kill()
        self.tally.controller_kills += 1
        self.restart_when = (self.watch.total + moment.restart_after, time.monotonic() + RESTART_WAIT_MAX)
        self.say(
            f"SIGKILLed hpo run #{record.index} after {record.seconds:.1f}s at {self.watch.total} reports; "
            f"restarting after {moment.restart_after} more report(s) (at most {RESTART_WAIT_MAX:.0f}s)"
        )
        return True


def _summary_line(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "no summary"
    return f"{summary.get('complete')} complete, {summary.get('pruned')} pruned, {summary.get('failed')} failed, {summary.get('running')} running"


# -- main ----------------------------------------------------------------------------------


def make_world(args: argparse.Namespace, work: Path, volume_dir: Path) -> World:
    if args.backend == "local":
        return LocalWorld(STUDY, DirectoryVolume(volume_dir))
    return FakeWorld(STUDY, volume_dir, work / "fake", args.seed, work / "pod-cache")


def census_of(args: argparse.Namespace, world: World, volume: Volume, work: Path, tally: Tally,
              runs: ControllerRuns, started: float) -> Census:
    """Let finished workers end themselves, then count."""
    world.settle(time.monotonic() + SETTLE_SECONDS)
    harness = {
        "wall_seconds": time.monotonic() - started,
        "preemptions": tally.preemptions,
        "worker_kills": tally.worker_kills,
        "deletes": tally.deletes,
        "api_faults": tally.api_faults,
        "controller_kills": tally.controller_kills,
        "controller_runs": len(runs.records),
        "crash_codes": tally.crash_codes,
        "timed_out": tally.timed_out,
        "notes": tally.notes,
    }
    return build_census(
        volume=volume, study=STUDY, cache_dir=work / "census-cache", backend=world.name, seed=args.seed,
        trials_budget=args.trials, harness=harness, live=world.live_left(), bill_usd=world.bill_usd(),
        duplicate_pods=world.duplicate_pods(), exited_pods=world.exited_left(),
    )


def run_chaos(args: argparse.Namespace, work: Path, say: Callable[[str], None]) -> tuple[Census, Plan]:
    """Set up the world and the project, run the plan, take the census; always tears the world down."""
    volume_dir = work / "volume"
    volume_dir.mkdir(parents=True)
    (work / "logs").mkdir()
    plan = make_plan(
        seed=args.seed, trials=args.trials, max_step=args.max_step, preempt_rate=args.preempt_rate,
        controller_kills=args.controller_kills, worker_kills=args.worker_kills, deletes=args.deletes,
        api_faults=args.api_faults,
    )
    world = make_world(args, work, volume_dir)
    try:
        studies = write_project(work / "project", study_entry(args, world, volume_dir))
        env = {**os.environ, **world.env(), "HPO_CACHE_DIR": str(work / "cache")}
        env.pop("HPO_STUDIES", None)
        runs = ControllerRuns(studies, env, work / "logs")
        volume = DirectoryVolume(volume_dir)
        started = time.monotonic()
        say(f"chaos: {args.trials} trials on the {world.name} backend, seed {args.seed}, "
            f"{len(plan.moments)} moments planned, {args.preempt_rate:.0%} of attempts to be preempted; folder {work}")
        tally = Chaos(plan, world, VolumeWatch(volume, STUDY), runs, args.trials, started + args.timeout, say).run()
        return census_of(args, world, volume, work, tally, runs, started), plan
    finally:
        world.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the harness; exit 0 when every invariant held, 1 when one broke, 2 when it could not run."""
    args = resolve(build_parser().parse_args(argv))
    err = Console(stderr=True, highlight=False)
    started = time.monotonic()

    def say(text: str) -> None:
        if not args.quiet:
            err.print(f"[dim]{time.monotonic() - started:7.1f}s[/dim] {text}", markup=True, soft_wrap=True)

    work = Path(tempfile.mkdtemp(prefix="hpo-chaos-"))
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` and timeouts tear down like Ctrl-C: no pod left behind
    try:
        census, plan = run_chaos(args, work, say)
    except KeyboardInterrupt:
        err.print(f"interrupted; the run's folder is {work}")
        return 130
    except Exception as exc:  # noqa: BLE001  the harness failed, not the study: say so, keep the evidence
        err.print(f"chaos: the harness could not run: {type(exc).__name__}: {exc}; folder kept: {work}")
        return 2
    broken = census.broken()
    if args.json:
        print(json.dumps({**census.to_json(), "plan": plan.to_json(), "folder": str(work) if args.keep or broken else None}))
    else:
        out = Console(highlight=False, width=None if sys.stdout.isatty() else 110)
        out.print(render(census))
        for note in census.notes:
            out.print(f"note: {note}")
        for line in broken:
            out.print(f"[bold red]BROKEN[/bold red] {line}")
        if not broken:
            out.print("[green]every invariant held[/green]")
    if args.keep or broken:
        err.print(f"the run's folder (volume, hpo run logs, pod logs): {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
