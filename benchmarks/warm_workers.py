"""Warm workers against one pod per attempt: the demo-pods study run both ways on a fake RunPod.

The ``demo-pods`` study of studies.yaml (the demo MLP on pods, spot
preferred, its own sampler and pruner) runs twice on a fake RunPod started
here (``time_scale`` 20: a fake second is 1/20 of a real one), each time on a
fresh fake and a fresh temporary volume (never the repo's ``storage/``), with
the same sampler seed, ``--trials`` and ``--concurrency``: once with
``workers: {reuse: true}`` (up to ``concurrency`` long-lived pods
``hpo-demo-pods-w<k>`` that run attempt after attempt) and once with
``reuse: false`` (a pod per attempt, ``hpo-demo-pods-<trial>-<attempt>``).
``hpo run`` is a real subprocess, as a user runs it. Per run it prints:

1. pods created (every pod of the study the fake ever made, from its own
   state) against the attempts started (attempt folders on the volume), and
   the preemptions; with warm workers the goal is ``pods <= concurrency +
   preemptions``;
2. billed seconds not spent in an attempt, over all billed seconds: the
   fake's bill per pod (its billing intervals, fake seconds) against the
   attempts' spans on that pod (warm: the worker log's ``start`` to ``end``
   entries, which is what the pool's ledger splits the bill by; one pod per
   attempt: the attempt's ``start`` event to its final event), split into
   provisioning (pod created to its container started: the fake's
   provisioning and image pull), boot (container started to the first
   attempt's start: the agent's imports, the fork server), idle (between two
   attempts of a worker) and tail (after the last attempt until the pod stops
   billing). Beside it, the study's own overhead records
   (``hpo:overhead:<worker id>``, :func:`hpo.cost.study_overhead`): exact
   in sum, but on the fake the pool clamps the logs' times (this machine's
   clock, behind the fake's) to its own looks, so their split is one poll
   grained. Goal with warm workers: <= 5 %;
3. how long a trial waits for a warm worker: for the first attempt of every
   trial numbered ``>= concurrency``, from its assignment (the mtime of its
   ``launch.json``, written when the pool assigns it; ``written_at`` in
   ``assignment.json`` is overwritten by the next assignment) to the worker
   log's ``start`` entry (the pick-up) and to the attempt's first ``report``
   event; also from ``launched_at`` in ``launch.json`` to that report (the
   pool writes it on the provider's clock as the controller extrapolates it
   between listings; a pod per attempt, on this machine's wall clock, which
   the fake's runs 20 times ahead of: that column is not comparable). In
   fake seconds and in the study's poll intervals (goal: <= 1 poll interval;
   the first report includes the objective's set-up and its first epoch).
   The same figures for one pod per attempt show what a cold pod costs;
4. cost: the study's cost (the trials' costs, :func:`hpo.cost.trial_costs`,
   plus the overhead records) against the fake's bill, to the cent.

Times the pods write (worker logs, events) are this machine's wall clock,
turned into fake seconds by the fake's scale. Pods the study left live after
``hpo run`` ended (given a few seconds to end themselves) are named as
leaked. The fixed CPU an attempt spends before its first epoch (imports,
data, initialisation) is measured by benchmarks/pruning.py, not here. It
asserts nothing: read the figures.

    python benchmarks/warm_workers.py [--trials 12] [--concurrency 3] [--seed 42] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the package itself, when it is not installed

from chaos import write_project  # noqa: E402  (beside this file: the same project a chaos run writes)

from hpo.backends.runpod import parse_pod_name  # noqa: E402
from hpo.cost import study_overhead, trial_costs  # noqa: E402
from hpo.events import FinalEvent, ReportEvent, StartEvent, drain  # noqa: E402
from hpo.fake_runpod import FakeRunPod  # noqa: E402
from hpo.fake_runpod._state import FakePodView  # noqa: E402
from hpo.journal import open_storage  # noqa: E402
from hpo.layout import StudyLayout  # noqa: E402
from hpo.pool import WORKER_LOG_ENTRY, EndEntry, StartEntry, worker_log_key  # noqa: E402
from hpo.records import read_launch  # noqa: E402
from hpo.volume import DirectoryVolume, Volume  # noqa: E402

STUDY = "demo-pods"
VOLUME_ID = "warmbench01"
TIME_SCALE = 20.0
LIVE_STATUSES = ("PROVISIONING", "STARTING", "RUNNING")
SETTLE_SECONDS = 15.0
"""Real seconds the study's pods get to end after `hpo run` exits before they count as leaked."""
RUN_TIMEOUT = 900.0
"""Real seconds one `hpo run` may take before it is called stuck (and killed)."""


# -- one run -------------------------------------------------------------------------------


def study_entry(base: dict[str, Any], args: argparse.Namespace, reuse: bool, volume_dir: Path, data_center: str) -> dict[str, Any]:
    """demo-pods as studies.yaml has it, with this run's seed, budget, volume and ``workers.reuse``."""
    entry = copy.deepcopy(base)
    entry["sampler"] = {**entry.get("sampler", {}), "seed": args.seed}
    entry["budget"] = {**entry.get("budget", {}), "trials": args.trials, "concurrency": args.concurrency}
    entry["volume"] = {"id": VOLUME_ID, "data_center": data_center, "local_path": str(volume_dir)}
    entry["workers"] = {**entry.get("workers", {}), "reuse": reuse}
    return entry


@dataclass
class Captured:
    """What one run left: the fake's pods, the volume, the controller's exit, and the clock mapping."""

    reuse: bool
    volume: Volume
    pods: list[FakePodView]
    leaked: list[str]
    rc: int
    wall_seconds: float
    summary: dict[str, Any] | None
    stderr_tail: str
    real0: float  # time.time() ...
    fake0: float  # ... and the fake's seconds at that same instant
    fake_epoch: float  # the epoch seconds of the fake's second 0
    poll_interval: float
    cache_dir: Path

    def fake(self, real_t: float) -> float:
        """A wall-clock time written by a pod, in the fake's seconds since it started."""
        return self.fake0 + (real_t - self.real0) * TIME_SCALE


def run_once(base: dict[str, Any], args: argparse.Namespace, reuse: bool, work: Path, say: Any) -> Captured:
    """One fresh fake, one fresh volume, one `hpo run` to the end; then let the pods end and read the fake."""
    volume_dir = work / "volume"
    volume_dir.mkdir(parents=True)
    data_center = base.get("volume", {}).get("data_center", "EU-RO-1")
    extra = [f"PYTHONPATH={os.environ['PYTHONPATH']}"] if os.environ.get("PYTHONPATH") else [f"PYTHONPATH={REPO}"]
    pod_command = ["/usr/bin/env", f"HPO_CACHE_DIR={work / 'pod-cache'}", *extra, sys.executable, "-m", "hpo.agent"]
    fake = FakeRunPod(
        volumes={VOLUME_ID: volume_dir},
        volume_data_center=data_center,
        time_scale=TIME_SCALE,
        seed=args.seed,
        balance_usd=10_000.0,
        workdir=work / "fake",
        pod_command=pod_command,
    ).start()
    try:
        entry = study_entry(base, args, reuse, volume_dir, data_center)
        studies = write_project(work / "project", entry, STUDY)
        env = {**os.environ, **fake.client_env(), "HPO_CACHE_DIR": str(work / "cache")}
        env.pop("HPO_STUDIES", None)
        argv = [sys.executable, "-m", "hpo", "run", "--study", STUDY, "--studies", str(studies), "--json"]
        say(f"reuse={str(reuse).lower()}: hpo run ({args.trials} trials, concurrency {args.concurrency}); folder {work}")
        started = time.monotonic()
        with open(work / "hpo-run.out", "wb") as out, open(work / "hpo-run.err", "wb") as err:
            proc = subprocess.Popen(argv, env=env, cwd=studies.parent, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            try:
                rc = proc.wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = -9
                say(f"reuse={str(reuse).lower()}: hpo run still going after {RUN_TIMEOUT:.0f}s: killed (a stuck study?)")
        wall = time.monotonic() - started
        text = (work / "hpo-run.out").read_text(errors="replace").strip()
        try:
            summary = json.loads(text.splitlines()[-1]) if text else None
        except ValueError:
            summary = None
        err_text = (work / "hpo-run.err").read_text(errors="replace").strip().splitlines()
        say(f"reuse={str(reuse).lower()}: hpo run exited {rc} after {wall:.1f}s")
        deadline = time.monotonic() + SETTLE_SECONDS
        while _live(fake) and time.monotonic() < deadline:
            time.sleep(0.2)
        leaked = [f"{v.name} ({v.id}, {v.status})" for v in _live(fake)]
        real0, fake0 = time.time(), fake.now()
        pods = [v for v in fake.pods(include_terminated=True) if _ours(v.name)]
        return Captured(
            reuse=reuse, volume=DirectoryVolume(volume_dir), pods=pods, leaked=leaked, rc=rc, wall_seconds=wall,
            summary=summary, stderr_tail="\n".join(err_text[-6:]), real0=real0, fake0=fake0,
            fake_epoch=fake.clock.epoch.timestamp(), poll_interval=float(entry.get("poll_interval", 1.0)),
            cache_dir=work / "reader-cache",
        )
    finally:
        fake.stop()


def _ours(name: str) -> bool:
    return name.startswith(f"hpo-{STUDY}-")


def _live(fake: FakeRunPod) -> list[FakePodView]:
    return [v for v in fake.pods(include_terminated=False) if _ours(v.name) and v.status in LIVE_STATUSES]


# -- reading what a run left ---------------------------------------------------------------


@dataclass
class AttemptFacts:
    """One attempt: its spans in fake seconds since the fake started (None where unknown)."""

    trial: int
    attempt: int
    assigned: float | None = None  # launch.json's mtime
    launched_at: float | None = None  # launch.json's launched_at (provider clock)
    picked_up: float | None = None  # the worker log's start entry
    started: float | None = None  # the attempt's start event
    first_report: float | None = None
    ended: float | None = None  # its final event
    worker: int | None = None
    reused: bool = False  # its worker had run an attempt before


def attempts_on_volume(cap: Captured) -> dict[tuple[int, int], AttemptFacts]:
    layout = StudyLayout(STUDY)
    found: dict[tuple[int, int], AttemptFacts] = {}
    for info in cap.volume.list(layout.trials_dir):
        parts = info.key.split("/")
        if len(parts) >= 4 and parts[-3] == "attempts" and parts[-1] in ("events.jsonl", "launch.json"):
            facts = found.setdefault((int(parts[-4]), int(parts[-2])), AttemptFacts(int(parts[-4]), int(parts[-2])))
            if parts[-1] == "launch.json" and info.mtime is not None:
                facts.assigned = cap.fake(info.mtime)  # written whole, once, when the attempt is assigned
    for (trial, attempt), facts in found.items():
        record = read_launch(cap.volume, layout.launch(trial, attempt))
        if record is not None and record.launched_at is not None:
            facts.launched_at = record.launched_at - cap.fake_epoch
        for event in drain(cap.volume, layout.events(trial, attempt)):
            if isinstance(event, StartEvent) and facts.started is None:
                facts.started = cap.fake(event.t)
            elif isinstance(event, ReportEvent) and facts.first_report is None:
                facts.first_report = cap.fake(event.t)
            elif isinstance(event, FinalEvent):
                facts.ended = cap.fake(event.t)
    return found


@dataclass
class WorkerLife:
    """A warm worker's log: its attempts' (start, end) in fake seconds, in order."""

    index: int
    spans: list[tuple[int, int, float, float | None]] = field(default_factory=list)  # trial, attempt, start, end


def worker_lives(cap: Captured, pods: list[FakePodView]) -> dict[int, WorkerLife]:
    lives: dict[int, WorkerLife] = {}
    for view in pods:
        suffix = view.name.removeprefix(f"hpo-{STUDY}-")
        if not (suffix.startswith("w") and suffix[1:].isdigit()):
            continue
        index = int(suffix[1:])
        life = lives.setdefault(index, WorkerLife(index))
        key = worker_log_key(STUDY, index)
        if not cap.volume.exists(key) or life.spans:
            continue
        open_: dict[int, tuple[int, int, float]] = {}
        for line in cap.volume.read_bytes(key).splitlines():
            try:
                entry = WORKER_LOG_ENTRY.validate_json(line)
            except ValueError:
                continue
            if isinstance(entry, StartEntry):
                open_[entry.seq] = (entry.trial, entry.attempt, cap.fake(entry.t))
            elif isinstance(entry, EndEntry) and entry.seq in open_:
                trial, attempt, start = open_.pop(entry.seq)
                life.spans.append((trial, attempt, start, cap.fake(entry.t)))
        life.spans.extend((t, a, s, None) for t, a, s in open_.values())
        life.spans.sort(key=lambda span: span[2])
    return lives


def _clip(start: float, end: float, intervals: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in intervals)


@dataclass
class Split:
    """Billed fake seconds of the study's pods, by what they were spent on."""

    billed: float = 0.0
    attempts: float = 0.0
    provisioning: float = 0.0
    boot: float = 0.0
    idle: float = 0.0
    tail: float = 0.0

    @property
    def outside(self) -> float:
        return self.billed - self.attempts


def split_bill(cap: Captured, attempts: dict[tuple[int, int], AttemptFacts], lives: dict[int, WorkerLife]) -> Split:
    """Each pod's billed seconds: provisioning, boot, the attempts' spans, idle gaps, the tail."""
    split = Split()
    for view in cap.pods:
        intervals = [(a, b if b is not None else cap.fake0) for a, b in view.billing_intervals]
        if not intervals:
            continue
        billed_end = intervals[-1][1]
        split.billed += view.billed_seconds
        # started_at: when its container first ran (container_started_at is cleared once the pod stops).
        container = view.started_at if view.started_at is not None else billed_end
        container = min(container, billed_end)
        split.provisioning += _clip(view.created_at, container, intervals)
        ref = parse_pod_name(STUDY, view.name)
        if ref is not None:  # one attempt on this pod: its start event to its final event
            facts = attempts.get((ref.trial, ref.attempt))
            spans = []
            if facts is not None and facts.started is not None:
                spans = [(facts.started, facts.ended if facts.ended is not None else billed_end)]
        else:
            suffix = view.name.removeprefix(f"hpo-{STUDY}-")[1:]
            life = lives.get(int(suffix)) if suffix.isdigit() else None
            spans = [(s, e if e is not None else billed_end) for _, _, s, e in (life.spans if life else [])]
        cursor = container
        for i, (start, end) in enumerate(spans):
            gap = _clip(cursor, start, intervals)
            if i == 0:
                split.boot += gap
            else:
                split.idle += gap
            split.attempts += _clip(start, end, intervals)
            cursor = max(cursor, end)
        if spans:
            split.tail += _clip(cursor, billed_end, intervals)
        else:
            split.boot += _clip(container, billed_end, intervals)
    return split


@dataclass
class StudyCost:
    trials_usd: float
    overhead_usd: float
    overhead_seconds: float
    overhead_workers: int
    trials: int
    states: dict[str, int]
    preemptions: int


def study_cost(cap: Captured) -> StudyCost | None:
    storage = open_storage(cap.volume, STUDY, cache_dir=cap.cache_dir)
    loaded = storage.load_study(STUDY)
    if loaded is None:
        return None
    trials = loaded.get_trials(deepcopy=False)
    costs = trial_costs(storage.optuna, loaded._study_id, trials, time.time())
    overhead = study_overhead(storage.optuna, loaded._study_id)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    preemptions = sum(int(t.user_attrs.get("preemptions", 0) or 0) for t in trials)
    return StudyCost(
        math.fsum(c.usd for c in costs.values()), overhead.usd, overhead.seconds, overhead.workers, len(trials),
        states, preemptions,
    )


def _stats(values: list[float]) -> dict[str, float | int] | None:
    if not values:
        return None
    return {"n": len(values), "median": statistics.median(values), "max": max(values), "min": min(values)}


def measure(cap: Captured, args: argparse.Namespace) -> dict[str, Any]:
    """The four figures of one run, as JSON-able numbers."""
    attempts = attempts_on_volume(cap)
    lives = worker_lives(cap, cap.pods)
    for life in lives.values():
        for i, (trial, attempt, start, _end) in enumerate(life.spans):
            facts = attempts.get((trial, attempt))
            if facts is not None:
                facts.picked_up, facts.worker, facts.reused = start, life.index, i > 0
    split = split_bill(cap, attempts, lives)
    cost = study_cost(cap)
    bill = math.fsum(v.billed_usd for v in cap.pods)
    preempted_pods = [v.name for v in cap.pods if v.stop_reason and "preempt" in v.stop_reason.lower()]
    names: dict[str, int] = {}
    for view in cap.pods:
        names[view.name] = names.get(view.name, 0) + 1

    poll_fake = cap.poll_interval * TIME_SCALE
    later = [f for (t, a), f in sorted(attempts.items()) if t >= args.concurrency and a == min(
        x for (tt, x) in attempts if tt == t)]
    waits: dict[str, list[float]] = {"pickup": [], "to_report": [], "launched_at_to_report": [], "start_to_report": []}
    for facts in later:
        if cap.reuse and not facts.reused:
            continue  # a trial that got a fresh worker (e.g. after one was retired): not a warm hand-over
        if facts.assigned is not None and facts.picked_up is not None:
            waits["pickup"].append(facts.picked_up - facts.assigned)
        if facts.assigned is not None and facts.first_report is not None:
            waits["to_report"].append(facts.first_report - facts.assigned)
        if facts.launched_at is not None and facts.first_report is not None:
            waits["launched_at_to_report"].append(facts.first_report - facts.launched_at)
        if facts.started is not None and facts.first_report is not None:
            waits["start_to_report"].append(facts.first_report - facts.started)
    warm_later = sum(1 for f in later if f.reused)
    no_final = [f"trial {t} attempt {a}" for (t, a), f in sorted(attempts.items()) if f.started is not None and f.ended is None]
    no_end = [
        f"w{life.index}: trial {t} attempt {a}" for life in lives.values() for t, a, _s, e in life.spans if e is None
    ]
    return {
        "reuse": cap.reuse,
        "rc": cap.rc,
        "wall_seconds": round(cap.wall_seconds, 1),
        "summary": cap.summary,
        "pods_created": len(cap.pods),
        "pod_names": sorted(names),
        "duplicate_pod_names": sorted(n for n, c in names.items() if c > 1),
        "attempts": len(attempts),
        "preempted_pods": preempted_pods,
        "preemptions_recorded": cost.preemptions if cost else None,
        "leaked_pods": cap.leaked,
        "attempts_without_final_event": no_final,
        "worker_starts_without_end": no_end,
        "pods": [
            {
                "name": v.name, "id": v.id, "status": v.status, "stop_reason": v.stop_reason,
                "created_at": v.created_at, "started_at": v.started_at, "terminated_at": v.terminated_at,
                "billed_seconds": v.billed_seconds, "billed_usd": v.billed_usd, "exit_codes": list(v.exit_codes),
            }
            for v in cap.pods
        ],
        "billed_seconds": split.billed,
        "split_seconds": {
            "attempts": split.attempts, "provisioning": split.provisioning, "boot": split.boot,
            "idle": split.idle, "tail": split.tail,
        },
        "outside_attempts_share": split.outside / split.billed if split.billed else None,
        "overhead_records": None if cost is None else {
            "usd": cost.overhead_usd, "seconds": cost.overhead_seconds, "workers": cost.overhead_workers,
        },
        "poll_interval_s": cap.poll_interval,
        "poll_interval_fake_s": poll_fake,
        "later_trials": len(later),
        "later_trials_on_reused_worker": warm_later,
        "wait_fake_s": {k: _stats(v) for k, v in waits.items()},
        "wait_polls": {k: _stats([x / poll_fake for x in v]) for k, v in waits.items()},
        "study_trials_usd": cost.trials_usd if cost else None,
        "study_overhead_usd": cost.overhead_usd if cost else None,
        "study_cost_usd": (cost.trials_usd + cost.overhead_usd) if cost else None,
        "bill_usd": bill,
        "cost_minus_bill_usd": (cost.trials_usd + cost.overhead_usd - bill) if cost else None,
        "trial_states": cost.states if cost else None,
        "stderr_tail": cap.stderr_tail if cap.rc != 0 else "",
    }


# -- printing ------------------------------------------------------------------------------


def _f(value: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _wait(m: dict[str, Any], key: str) -> str:
    s, p = m["wait_fake_s"][key], m["wait_polls"][key]
    if s is None:
        return "n/a"
    return f"{s['median']:.1f} / {s['max']:.1f} s ({p['median']:.2f} / {p['max']:.2f} polls)"


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    by = {m["reuse"]: m for m in results}
    cols = [by.get(True), by.get(False)]
    rows: list[tuple[str, list[str], str]] = []

    def row(label: str, fn: Any, goal: str = "") -> None:
        rows.append((label, [fn(m) if m is not None else "-" for m in cols], goal))

    row("hpo run: exit, real seconds", lambda m: f"{m['rc']}, {m['wall_seconds']:.0f} s")
    row("trials by state", lambda m: ", ".join(f"{k.lower()} {v}" for k, v in sorted((m["trial_states"] or {}).items())))
    row("1. pods created / attempts", lambda m: f"{m['pods_created']} / {m['attempts']}",
        f"warm: <= {args.concurrency} + preemptions")
    row("   preempted pods (fake) / recorded", lambda m: f"{len(m['preempted_pods'])} / {m['preemptions_recorded']}")
    row("   pods left live (leaked)", lambda m: str(len(m["leaked_pods"])), "0")
    row("   duplicate pod names", lambda m: str(len(m["duplicate_pod_names"])), "0")
    row("2. billed fake s outside attempts", lambda m: (
        f"{m['billed_seconds'] - m['split_seconds']['attempts']:.0f} / {m['billed_seconds']:.0f} s "
        f"= {_f(m['outside_attempts_share'] and 100 * m['outside_attempts_share'])} %"), "warm: <= 5 %")
    for part in ("provisioning", "boot", "idle", "tail"):
        row(f"   {part}", lambda m, p=part: f"{m['split_seconds'][p]:.0f} s "
            f"({100 * m['split_seconds'][p] / m['billed_seconds']:.1f} %)" if m["billed_seconds"] else "n/a")
    row("   overhead records: s, USD", lambda m: "none" if not m["overhead_records"] or not m["overhead_records"]["workers"]
        else f"{m['overhead_records']['seconds']:.0f} s, ${m['overhead_records']['usd']:.4f} ({m['overhead_records']['workers']} workers)")
    row("   overhead records / billed", lambda m: "none" if not m["overhead_records"] or not m["overhead_records"]["workers"]
        else f"{100 * m['overhead_records']['seconds'] / m['billed_seconds']:.1f} %", "warm: <= 5 %")
    row("3. later trials (# >= concurrency)", lambda m: f"{m['later_trials']} ({m['later_trials_on_reused_worker']} on a reused worker)")
    row("   assigned -> picked up (med / max)", lambda m: _wait(m, "pickup"))
    row("   assigned -> 1st report", lambda m: _wait(m, "to_report"), "warm: <= 1 poll")
    row("   launched_at -> 1st report", lambda m: _wait(m, "launched_at_to_report"))
    row("   attempt start -> 1st report", lambda m: _wait(m, "start_to_report"))
    row("4. cost: trials + overhead", lambda m: f"${_f(m['study_trials_usd'], '{:.4f}')} + ${_f(m['study_overhead_usd'], '{:.4f}')}")
    row("   study cost vs fake's bill", lambda m: f"${_f(m['study_cost_usd'], '{:.4f}')} vs ${m['bill_usd']:.4f} "
        f"({_f(m['cost_minus_bill_usd'], '{:+.4f}')})", "to the cent")

    head = ("figure", ["reuse: true", "reuse: false"], "goal")
    width0 = max(len(r[0]) for r in [head, *rows])
    widths = [max(len(r[1][i]) for r in [head, *rows]) for i in range(2)]
    lines = []
    for label, values, goal in [head, *rows]:
        lines.append(f"{label:<{width0}}  {values[0]:<{widths[0]}}  {values[1]:<{widths[1]}}  {goal}".rstrip())
        if label == "figure":
            lines.append("-" * len(lines[0]))
    poll = results[0]["poll_interval_s"]
    lines.append(
        f"(fake seconds, time_scale {TIME_SCALE:g}; a poll = the study's poll_interval {poll:g} s real = "
        f"{poll * TIME_SCALE:g} fake s; waits are for the first attempt of trials >= {args.concurrency}, "
        "warm: only those handed to a worker that had run an attempt before)"
    )
    for m in results:
        tag = f"reuse={str(m['reuse']).lower()}"
        if m["leaked_pods"]:
            lines.append(f"{tag}: pods still live after hpo run ended: {', '.join(m['leaked_pods'])}")
        if m["attempts_without_final_event"]:
            lines.append(f"{tag}: attempts with no final event: {', '.join(m['attempts_without_final_event'])}")
        if m["worker_starts_without_end"]:
            lines.append(f"{tag}: worker log starts with no end entry: {', '.join(m['worker_starts_without_end'])}")
        if m["duplicate_pod_names"]:
            lines.append(f"{tag}: names with two pods or more: {', '.join(m['duplicate_pod_names'])}")
        if m["cost_minus_bill_usd"] is not None and abs(m["cost_minus_bill_usd"]) >= 0.005:
            lines.append(f"{tag}: the study's cost differs from the fake's bill by ${m['cost_minus_bill_usd']:+.4f}")
        if m["rc"] != 0:
            lines.append(f"{tag}: hpo run exited {m['rc']}: {m['stderr_tail']}")
        lines.append(f"{tag}: pods: {', '.join(m['pod_names'])}")
    lines.append("fixed CPU per attempt before training (the demo, local): see benchmarks/pruning.py")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/warm_workers.py",
        description="demo-pods on a fake RunPod with warm workers and with a pod per attempt: pods, overhead, waits, cost.",
    )
    parser.add_argument("--trials", type=int, default=12, help="budget.trials (default 12)")
    parser.add_argument("--concurrency", type=int, default=3, help="budget.concurrency (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="the sampler's seed (default: studies.yaml's)")
    parser.add_argument("--only", choices=("reuse", "no-reuse"), default=None, help="run one of the two only")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    parser.add_argument("--keep", action="store_true", help="keep the runs' folders (volumes, logs) and print where")
    args = parser.parse_args(argv)

    base = yaml.safe_load((REPO / "studies.yaml").read_text())["studies"][STUDY]
    if args.seed is None:
        args.seed = int(base.get("sampler", {}).get("seed", 0))

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="hpo-warm-"))
    results = []
    try:
        modes = [True, False] if args.only is None else [args.only == "reuse"]
        for reuse in modes:
            cap = run_once(base, args, reuse, work / ("reuse" if reuse else "no-reuse"), say)
            results.append(measure(cap, args))
    finally:
        if args.keep:
            say(f"the runs' folders: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"trials": args.trials, "concurrency": args.concurrency, "seed": args.seed, "runs": results}))
    else:
        print(render(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
