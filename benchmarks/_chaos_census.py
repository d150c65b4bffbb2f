"""The census after a chaos run: what the workers wrote against what the study holds, and what is left running.

Two sources are compared, read as any other machine would read them:

* the volume: every attempt's ``events.jsonl`` (``hpo/<study>/trials/<n>/attempts/<a>/``),
  parsed with :mod:`hpo.events`: the reports each worker wrote, and its verdict
  (``done``, ``pruned``, ``error``);
* the study: its journal opened as a reader (:func:`hpo.journal.open_storage`),
  with each trial's state, intermediate values and cost records.

The invariants (``Census.broken``) are the project's own (DESIGN.md,
"Invariants"): nothing reported is lost or counted twice, no finished result
is thrown away, no trial is left RUNNING, no worker outlives its trial, and
the study's cost matches the provider's bill to the cent.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from hpo.cost import study_overhead, trial_costs
from hpo.errors import HpoError
from hpo.events import DoneEvent, ErrorEvent, EventTail, PrunedEvent, ReportEvent, drain
from hpo.journal import open_storage
from hpo.layout import StudyLayout
from hpo.trial_attrs import ATTR_PRUNE_ORDER
from hpo.volume import Volume

COST_TOLERANCE_USD = 0.01
"""The study's cost and the bill must agree to the cent."""

VERDICT_STATES = {"done": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "error": TrialState.FAIL}
_ATTEMPT_KEY = re.compile(r"trials/(\d+)/attempts/(\d+)/")
EXAMPLES = 6
"""How many instances of a broken invariant the census names."""


@dataclass(frozen=True)
class Verdict:
    """The first final word (done / pruned / error) a trial's workers wrote, in attempt order."""

    kind: str
    attempt: int
    t: float
    value: float | None


@dataclass
class Written:
    """What the workers wrote on the volume, over every attempt in attempt order."""

    firsts: dict[tuple[int, int], float] = field(default_factory=dict)
    """(trial, step) -> the first value written for that step (the one that must win)."""
    written_at: dict[tuple[int, int], float] = field(default_factory=dict)
    """(trial, step) -> when the worker wrote that first value (its clock: this machine's)."""
    verdicts: dict[int, Verdict] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    """trial -> attempts started (attempt folders on the volume)."""
    unseen_at_prune: set[tuple[int, int]] = field(default_factory=set)
    """(trial, step) reports past the bytes the controller had read when it pruned the trial (its control.json)."""


def read_written(volume: Volume, study: str) -> Written:
    """Every report and verdict on the volume; a torn or garbage line is skipped as the controller skips it."""
    layout = StudyLayout(study)
    found: set[tuple[int, int]] = set()
    for info in volume.list(layout.trials_dir):
        match = _ATTEMPT_KEY.search(info.key)
        if match:
            found.add((int(match.group(1)), int(match.group(2))))
    written = Written()
    for trial, attempt in sorted(found):
        written.attempts[trial] = max(written.attempts.get(trial, 0), attempt + 1)
        for event in drain(volume, layout.events(trial, attempt)):
            if isinstance(event, ReportEvent) and (trial, event.step) not in written.firsts:
                written.firsts[(trial, event.step)] = event.value
                written.written_at[(trial, event.step)] = event.t
            elif isinstance(event, DoneEvent | PrunedEvent | ErrorEvent) and trial not in written.verdicts:
                value = event.value if isinstance(event, DoneEvent) else None
                written.verdicts[trial] = Verdict(event.type, attempt, event.t, value)
    return written


def mark_unseen_at_prune(volume: Volume, study: str, trials: Iterable[FrozenTrial], written: Written) -> None:
    """Note the reports each pruned trial's attempt wrote past what the pruning decision had read."""
    layout = StudyLayout(study)
    recorded = {t.number: t.user_attrs.get(ATTR_PRUNE_ORDER) for t in trials}
    for trial in written.attempts:
        steps = _unseen_at_prune(volume, layout, trial, recorded.get(trial))
        written.unseen_at_prune |= {(trial, step) for step in steps}


def _unseen_at_prune(volume: Volume, layout: StudyLayout, trial: int, recorded: object = None) -> set[int]:
    """Steps the pruned attempt wrote after the bytes the controller had read when it decided (none if not pruned).

    The controller records in the prune order how far it had read the
    attempt's event file; a worker reporting on meanwhile wrote the rest, which
    cannot enter a trial pruned already: late, not lost. The order is in the
    trial's ``control.json`` and, told with the verdict, in its user attributes
    (``recorded``): a controller killed between the tell and the write leaves only that.
    """
    try:
        order = volume.read_json(layout.control(trial))
    except HpoError:
        order = recorded
    if not isinstance(order, dict) or order.get("action") != "prune":
        order = recorded
    if not isinstance(order, dict) or order.get("action") != "prune":
        return set()
    attempt, read = order.get("attempt"), order.get("events_read")
    if not isinstance(attempt, int) or not isinstance(read, int):
        return set()
    try:
        data = volume.read_bytes(layout.events(trial, attempt))
    except HpoError:
        return set()
    tail = EventTail(volume, layout.events(trial, attempt))
    return {event.step for event in tail.feed(data[read:]) if isinstance(event, ReportEvent)}


@dataclass
class Census:
    """The figures of one chaos run, and the invariants they break.

    Counts are plain numbers; ``*_examples`` name a few instances of each
    problem (trial and step) so a broken run says where to look.
    """

    backend: str
    seed: int
    trials_budget: int
    wall_seconds: float
    states: dict[str, int]
    attempts: int
    preemptions_delivered: int
    preemptions_in_study: int
    worker_kills: int
    deletes: int
    api_faults: dict[str, int]
    controller_kills: int
    controller_runs: int
    controller_crashes: int
    crash_codes: list[int]
    live_workers: int
    live_examples: list[str]
    reports_written: int
    reports_in_study: int
    lost: int
    lost_examples: list[str]
    wrong: int
    wrong_examples: list[str]
    stuck: int
    stuck_examples: list[str]
    discarded: int
    discarded_examples: list[str]
    late_verdicts: int
    late_reports: int
    cost_study_usd: float | None
    cost_bill_usd: float | None
    duplicate_pods: int = 0
    exited_pods: int = 0
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> int:
        """Trials the study finished (complete, pruned or failed)."""
        return sum(self.states.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))

    @property
    def cost_diff_usd(self) -> float | None:
        """Study cost minus the bill (None where there is no bill: the local backend)."""
        if self.cost_study_usd is None or self.cost_bill_usd is None:
            return None
        return self.cost_study_usd - self.cost_bill_usd

    def broken(self) -> list[str]:
        """One line per broken invariant; empty when the run kept every one."""
        problems: list[str] = []
        if self.timed_out:
            problems.append("the run hit its deadline before the study finished")
        if self.lost:
            problems.append(f"{self.lost} written report(s) never reached the study: {_few(self.lost_examples)}")
        if self.wrong:
            problems.append(f"{self.wrong} step(s) in the study differ from the first value written: {_few(self.wrong_examples)}")
        if self.discarded:
            problems.append(f"{self.discarded} finished result(s) discarded: {_few(self.discarded_examples)}")
        if self.stuck:
            problems.append(f"{self.stuck} trial(s) stuck RUNNING after the final run: {_few(self.stuck_examples)}")
        if self.finished < self.trials_budget:
            problems.append(f"the study finished {self.finished} of its {self.trials_budget} trials")
        if self.live_workers:
            problems.append(f"{self.live_workers} worker(s) still alive: {_few(self.live_examples)}")
        if self.controller_crashes:
            codes = ", ".join(str(c) for c in self.crash_codes)
            problems.append(f"`hpo run` died on its own {self.controller_crashes} time(s) (exit codes {codes})")
        diff = self.cost_diff_usd
        if diff is not None and abs(diff) >= COST_TOLERANCE_USD:
            problems.append(
                f"the study's cost ${self.cost_study_usd:.4f} differs from the bill ${self.cost_bill_usd:.4f} by ${diff:+.4f}"
            )
        return problems

    def to_json(self) -> dict[str, Any]:
        """The census as JSON, with the derived figures and the broken invariants."""
        out = asdict(self)
        out["finished"] = self.finished
        out["cost_diff_usd"] = self.cost_diff_usd
        out["broken"] = self.broken()
        out["ok"] = not out["broken"]
        return out


def _few(examples: list[str]) -> str:
    return ", ".join(examples[:EXAMPLES]) + (" ..." if len(examples) > EXAMPLES else "")


def compare(trials: Iterable[FrozenTrial], written: Written) -> dict[str, Any]:
    """Reports, verdicts and states: the study against what the workers wrote."""
    trials = list(trials)
    in_study = {(t.number, step): value for t in trials for step, value in t.intermediate_values.items()}
    told = {t.number: t.datetime_complete.timestamp() for t in trials if t.datetime_complete is not None}
    missing = set(written.firsts) - set(in_study)
    # A report written after the controller told the trial's verdict (a worker finishing its step while
    # being pruned) cannot enter a finished trial: late, not lost. Everything written before must be there.
    late_reports = {
        key for key in missing if written.written_at[key] > told.get(key[0], math.inf) or key in written.unseen_at_prune
    }
    lost = sorted(missing - late_reports)
    wrong = sorted(
        key for key, value in in_study.items()
        if key not in written.firsts or not math.isclose(value, written.firsts[key], rel_tol=1e-9, abs_tol=1e-12)
    )
    discarded: list[str] = []
    late = 0
    for trial in trials:
        verdict = written.verdicts.get(trial.number)
        if verdict is None:
            continue
        expected = VERDICT_STATES[verdict.kind]
        told_at = trial.datetime_complete.timestamp() if trial.datetime_complete else math.inf
        if trial.state != expected:
            if trial.state.is_finished() and verdict.t > told_at:
                late += 1  # the worker finished after the controller had decided: a race, not a loss
                continue
            when = f", told {told_at - verdict.t:.2f}s after it was written" if math.isfinite(told_at) else ""
            discarded.append(
                f"trial {trial.number} wrote {verdict.kind} (attempt {verdict.attempt}) but is {trial.state.name}{when}"
            )
        elif verdict.kind == "done" and verdict.value is not None and trial.value is not None and not math.isclose(
            trial.value, verdict.value, rel_tol=1e-9
        ):
            discarded.append(f"trial {trial.number} returned {verdict.value:.6g} but the study holds {trial.value:.6g}")
    stuck = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return {
        "reports_written": len(written.firsts),
        "reports_in_study": len(in_study),
        "lost": lost,
        "late_reports": len(late_reports),
        "wrong": wrong,
        "discarded": discarded,
        "late": late,
        "stuck": stuck,
    }


def _steps(keys: list[tuple[int, int]]) -> list[str]:
    """``[(3, 6), (3, 7), (5, 2)]`` -> ``["trial 3 steps 6-7", "trial 5 step 2"]``."""
    by_trial: dict[int, list[int]] = {}
    for trial, step in keys:
        by_trial.setdefault(trial, []).append(step)
    out = []
    for trial, steps in sorted(by_trial.items()):
        steps.sort()
        out.append(f"trial {trial} step {steps[0]}" if len(steps) == 1 else f"trial {trial} steps {_ranges(steps)}")
    return out


def _ranges(steps: list[int]) -> str:
    parts: list[str] = []
    start = prev = steps[0]
    for step in steps[1:] + [None]:  # type: ignore[list-item]
        if step is not None and step == prev + 1:
            prev = step
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if step is not None:
            start = prev = step
    return ",".join(parts)


@dataclass
class StudyFacts:
    """What the study's journal says, read as a fresh reader."""

    trials: list[FrozenTrial]
    cost_usd: float
    preemptions: int


def read_study(volume: Volume, study: str, cache_dir: Path) -> StudyFacts:
    """The study's trials and cost records from its journal on the volume (a reader: never writes)."""
    storage = open_storage(volume, study, cache_dir=cache_dir)
    loaded = storage.load_study(study)
    if loaded is None:
        return StudyFacts([], 0.0, 0)
    trials = loaded.get_trials(deepcopy=False)
    costs = trial_costs(storage.optuna, loaded._study_id, trials, time.time())
    # Warm workers bill outside attempts too (provisioning, image pull, idle): the study's overhead records.
    overhead = study_overhead(storage.optuna, loaded._study_id)
    preemptions = sum(int(t.user_attrs.get("preemptions", 0) or 0) for t in trials)
    return StudyFacts(trials, sum(c.usd for c in costs.values()) + overhead.usd, preemptions)


def render(census: Census) -> Table:
    """The one table a chaos run prints: figures on the left, the verdict of each invariant on the right."""
    table = Table(title=f"chaos census: {census.backend} backend, seed {census.seed}, {census.wall_seconds:.0f}s")
    table.add_column("what")
    table.add_column("figure", overflow="fold")
    table.add_column("", justify="center")
    ok, bad = "[green]ok[/green]", "[bold red]BROKEN[/bold red]"

    def row(what: str, figure: str, good: bool | None = None) -> None:
        table.add_row(what, figure, "" if good is None else (ok if good else bad))

    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(census.states.items()) if n)
    row("trials by state", f"{census.finished} of {census.trials_budget} finished ({states or 'none'})",
        census.finished >= census.trials_budget)
    share = census.preemptions_delivered / census.attempts if census.attempts else 0.0
    row("attempts", str(census.attempts))
    row("preemptions", f"{census.preemptions_delivered} delivered ({share:.0%} of attempts); "
        f"{census.preemptions_in_study} counted by the study")
    row("workers SIGKILLed / pods deleted", f"{census.worker_kills} / {census.deletes}")
    faults = ", ".join(f"{n} {k}" for k, n in sorted(census.api_faults.items())) or "none"
    row("RunPod API faults", faults)
    row("controller kills (SIGKILL)", f"{census.controller_kills}; `hpo run` started {census.controller_runs} times")
    crashes = f"{census.controller_crashes}" + (f" (exit codes {census.crash_codes})" if census.crash_codes else "")
    row("controller died on its own", crashes, census.controller_crashes == 0)
    row("live workers left", str(census.live_workers), census.live_workers == 0)
    row("reports written / in study", f"{census.reports_written} / {census.reports_in_study}")
    late = f" ({census.late_reports} more written after the trial's verdict, as it was pruned)" if census.late_reports else ""
    row("lost reports", f"{census.lost}{late}", census.lost == 0)
    row("duplicated / wrong steps", str(census.wrong), census.wrong == 0)
    row("trials stuck RUNNING", str(census.stuck), census.stuck == 0)
    row("finished results discarded", str(census.discarded), census.discarded == 0)
    if census.late_verdicts:
        row("verdicts after the controller's", f"{census.late_verdicts} (a worker finished just after it was pruned)")
    if census.duplicate_pods:
        row("attempts with two pods", str(census.duplicate_pods))
    if census.exited_pods:
        row("pods exited, not terminated", f"{census.exited_pods} (preempted or stopped; they bill nothing here)")
    diff = census.cost_diff_usd
    if diff is None:
        study = "n/a" if census.cost_study_usd is None else f"${census.cost_study_usd:.4f}"
        row("cost: study vs bill", f"{study} (no bill: local workers cost $0)")
    else:
        row("cost: study vs bill", f"${census.cost_study_usd:.4f} vs ${census.cost_bill_usd:.4f} (diff ${diff:+.4f})",
            abs(diff) < COST_TOLERANCE_USD)
    if census.timed_out:
        row("deadline", "hit before the study finished", False)
    return table


def build_census(
    *,
    volume: Volume,
    study: str,
    cache_dir: Path,
    backend: str,
    seed: int,
    trials_budget: int,
    harness: dict[str, Any],
    live: list[str],
    bill_usd: float | None,
    duplicate_pods: int = 0,
    exited_pods: int = 0,
) -> Census:
    """Read the volume and the study, and put the harness's own counts beside them."""
    written = read_written(volume, study)
    facts = read_study(volume, study, cache_dir)
    mark_unseen_at_prune(volume, study, facts.trials, written)
    found = compare(facts.trials, written)
    states: dict[str, int] = {}
    for trial in facts.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return Census(
        backend=backend,
        seed=seed,
        trials_budget=trials_budget,
        wall_seconds=harness["wall_seconds"],
        states=states,
        attempts=sum(written.attempts.values()),
        preemptions_delivered=harness["preemptions"],
        preemptions_in_study=facts.preemptions,
        worker_kills=harness["worker_kills"],
        deletes=harness["deletes"],
        api_faults=harness["api_faults"],
        controller_kills=harness["controller_kills"],
        controller_runs=harness["controller_runs"],
        controller_crashes=len(harness["crash_codes"]),
        crash_codes=harness["crash_codes"],
        live_workers=len(live),
        live_examples=live,
        reports_written=found["reports_written"],
        reports_in_study=found["reports_in_study"],
        lost=len(found["lost"]),
        lost_examples=_steps(found["lost"]),
        wrong=len(found["wrong"]),
        wrong_examples=_steps(found["wrong"]),
        stuck=len(found["stuck"]),
        stuck_examples=[f"trial {n}" for n in found["stuck"]],
        discarded=len(found["discarded"]),
        discarded_examples=found["discarded"],
        late_verdicts=found["late"],
        late_reports=found["late_reports"],
        cost_study_usd=None if bill_usd is None else facts.cost_usd,
        cost_bill_usd=bill_usd,
        duplicate_pods=duplicate_pods,
        exited_pods=exited_pods,
        timed_out=harness["timed_out"],
        notes=harness.get("notes", []),
    )
