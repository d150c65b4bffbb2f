"""A study's trials as rows: state, last step and value, attempts, worker, cost; and the study's spend.

Read-only: it opens the journal as a reader, so it runs beside a live
controller (on the same machine or another one). A cost still accruing (a
pod billing now) is counted up to this moment from its attempt record.

Where the controller runs is read from the study's lease (:mod:`hpo.lease`):
a RunPod pod of its own, a process on some host, or none (no lease, or one
that expired). A controller pod's cost is its record in the study
(:mod:`hpo.cost._controller`), counted up to this moment while its lease is
live, like a running attempt's.
"""

from __future__ import annotations

import dataclasses
import math
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo.backends import find_plugin
from hpo.config import StudyConfig
from hpo.cost import (
    BudgetGuard,
    ControllerCost,
    Overhead,
    Spend,
    TrialCost,
    load_controller_costs,
    load_overhead,
    total_overhead,
    trial_costs,
)
from hpo.journal import open_storage
from hpo.layout import StudyLayout
from hpo.lease import Lease, LeaseHolder
from hpo.records import LaunchRecord, read_launch
from hpo.trial_attrs import ATTR_ATTEMPTS, ATTR_ERROR, ATTR_INTERRUPTION, ATTR_PREEMPTIONS, ATTR_QUEUED, int_attr
from hpo.volume import Volume
from hpo.workers import AttemptRef, WorkerHandle


@dataclass(frozen=True)
class TrialRow:
    """One trial as ``hpo status`` shows it."""

    number: int
    state: str
    last_step: int | None
    last_value: float | None
    value: float | None
    attempts: int
    preemptions: int
    params: dict[str, Any]
    worker: str | None
    error: str | None
    best_value: float | None = None  # the best value it reported or returned (its loss)
    cost_usd: float | None = None
    gpu_seconds: float | None = None
    cpu_seconds: float | None = None
    gpu_type: str | None = None


@dataclass(frozen=True)
class SpendSummary:
    """What the study has spent, what its budget leaves, and the cheapest trial near the best loss."""

    usd: float
    gpu_hours: float
    cpu_seconds: float
    budget_usd: float | None
    budget_gpu_hours: float | None
    usd_left: float | None
    gpu_hours_left: float | None
    best_loss: float | None
    cheapest_near_best: int | None  # trial number: cheapest of those within 1 % of the best loss
    cheapest_cost: float | None
    cost_unit: str  # USD, or CPU-seconds for a study whose workers are free
    overhead_usd: float = 0.0  # warm workers' bills outside attempts (provisioning, image pull, idle); in ``usd``
    overhead_seconds: float = 0.0
    controller_usd: float = 0.0  # what the study's controller pods cost (``hpo run --remote``); in ``usd``
    controller_seconds: float = 0.0
    controller_pods: int = 0  # how many controller pods that spans (0: the controller never ran on a pod)


@dataclass(frozen=True)
class ControllerView:
    """Where the study's controller runs, as its lease says, and what its pod has cost so far.

    Attributes:
        running: Whether a controller holds a live lease.
        where: ``"remote"`` (on a RunPod pod of its own), ``"local"`` (a process on some host), None (none runs).
        pod: The pod of a remote controller.
        host: The host its process runs on.
        pid: Its process id there.
        this_machine: Whether that host is the one ``hpo status`` runs on.
        started_at: Epoch seconds it took the lease (None: its lease does not say).
        uptime_seconds: Seconds since then.
        usd: What its pod has cost so far (a remote controller whose cost is recorded).
        lease_expires_at: When its lease runs out unless renewed.
    """

    running: bool
    where: str | None = None
    pod: str | None = None
    host: str | None = None
    pid: int | None = None
    this_machine: bool = False
    started_at: float | None = None
    uptime_seconds: float | None = None
    usd: float | None = None
    lease_expires_at: float | None = None


def controller_view(
    holder: LeaseHolder | None, costs: Mapping[str, ControllerCost], now: float, *, hostname: str | None = None
) -> ControllerView:
    """The controller as ``holder`` (the study's lease, or None) says, with its pod's cost from ``costs``.

    A lease that expired, or names a dead process on this machine, is no
    controller running. ``hostname``: this machine's (default: its own).
    """
    if holder is None or not holder.live(now):
        return ControllerView(running=False)
    record = costs.get(holder.pod) if holder.pod is not None else None
    return ControllerView(
        running=True,
        where="remote" if holder.pod is not None else "local",
        pod=holder.pod,
        host=holder.host,
        pid=holder.pid,
        this_machine=holder.host == (socket.gethostname() if hostname is None else hostname),
        started_at=holder.started_at,
        uptime_seconds=holder.uptime(now),
        usd=None if record is None else record.usd,
        lease_expires_at=holder.expires_at,
    )


def read_controller(
    volume: Volume, study: str, costs: Mapping[str, ControllerCost] | None = None, now: float | None = None
) -> ControllerView:
    """Where the study's controller runs, read from its lease now (an unreadable lease: none, with a warning)."""
    now = time.time() if now is None else now
    return controller_view(Lease(volume, study).current(), costs or {}, now)


def _to_now(costs: Mapping[str, ControllerCost], holder: LeaseHolder | None, now: float) -> dict[str, ControllerCost]:
    """``costs`` with the live controller pod's record counted up to ``now`` (its pod bills on since it was saved).

    Only the pod that holds a live lease: a pod whose controller is gone
    without a last record is not known to bill on.
    """
    found = dict(costs)
    if holder is None or holder.pod is None or not holder.live(now):
        return found
    record = found.get(holder.pod)
    if record is not None and not record.billed:
        found[holder.pod] = dataclasses.replace(
            record, usd=record.usd_at(now), seconds=max(record.seconds, now - record.started_at)
        )
    return found


def _worker(
    volume: Volume,
    layout: StudyLayout,
    trial: int,
    attempts: int,
    live: Mapping[AttemptRef, WorkerHandle] | None,
    backend: str,
) -> str | None:
    """What runs the trial's current attempt, as its backend shows it: from its live view, else its launch record.

    The backend is the one the launch record names, else the study's own
    (``backend``): a study may have moved to another backend since.
    """
    if attempts == 0:
        return None
    ref = AttemptRef(trial, attempts - 1)
    # Junk in launch.json (a pod can write it) is one warning naming the file, then "no record".
    launch = read_launch(volume, layout.launch(trial, attempts - 1)) or LaunchRecord()
    plugin = find_plugin(launch.backend) or find_plugin(backend)
    if plugin is None:
        return None
    return plugin.describe_worker(launch, (live or {}).get(ref), listed=live is not None)


@dataclass(frozen=True)
class StudyView:
    """A study as ``hpo status`` shows it: its trials' rows, what warm workers and controller pods billed outside
    them, and where its controller runs."""

    rows: list[TrialRow]
    overhead: Overhead
    controller_costs: dict[str, ControllerCost] = field(default_factory=dict)  # by pod, the live one to now
    controller: ControllerView = ControllerView(running=False)


def study_view(
    config: StudyConfig,
    volume: Volume,
    *,
    live: Mapping[AttemptRef, WorkerHandle] | None = None,
    cache_dir: Path | None = None,
) -> StudyView | None:
    """Every trial of the study, in order, its overhead and controller; None if the study has not been run yet.

    ``live`` (the backend's live workers, if it could be asked) adds what the
    backend sees now (a pod's status and uptime) to what the launch records say.
    """
    storage = open_storage(volume, config.name, url=config.storage, cache_dir=cache_dir)
    study = storage.load_study(config.name)
    if study is None:
        return None
    layout = StudyLayout(config.name)
    trials = study.get_trials(deepcopy=False)
    now = time.time()
    costs = trial_costs(storage.optuna, study._study_id, trials, now)
    rows = [_row(trial, costs.get(trial.number), config, volume, layout, live) for trial in trials]
    attrs = storage.optuna.get_study_system_attrs(study._study_id)
    holder = Lease(volume, config.name).current()
    controller_costs = _to_now(load_controller_costs(attrs), holder, now)
    return StudyView(
        rows,
        total_overhead(load_overhead(attrs).values()),
        controller_costs,
        controller_view(holder, controller_costs, now),
    )


def study_rows(
    config: StudyConfig,
    volume: Volume,
    *,
    live: Mapping[AttemptRef, WorkerHandle] | None = None,
    cache_dir: Path | None = None,
) -> list[TrialRow] | None:
    """Every trial of the study, in order; None if the study has not been run yet (see :func:`study_view`)."""
    view = study_view(config, volume, live=live, cache_dir=cache_dir)
    return None if view is None else view.rows


def _row(
    trial: FrozenTrial,
    cost: TrialCost | None,
    config: StudyConfig,
    volume: Volume,
    layout: StudyLayout,
    live: Mapping[AttemptRef, WorkerHandle] | None,
) -> TrialRow:
    """One trial's row; its cost (``cost``) was worked out for every trial at once."""
    steps = trial.intermediate_values
    last_step = max(steps) if steps else None
    attrs = trial.user_attrs
    attempts = int_attr(attrs, ATTR_ATTEMPTS)
    running = trial.state == TrialState.RUNNING
    values = list(steps.values())
    if trial.value is not None:
        values.append(trial.value)
    return TrialRow(
        number=trial.number,
        state="queued" if running and attrs.get(ATTR_QUEUED) is True else trial.state.name.lower(),
        last_step=last_step,
        last_value=steps[last_step] if last_step is not None else None,
        value=trial.value if trial.state == TrialState.COMPLETE else None,
        attempts=attempts,
        preemptions=int_attr(attrs, ATTR_PREEMPTIONS),
        params=dict(trial.params),
        worker=_worker(volume, layout, trial.number, attempts, live, config.compute.backend) if running else None,
        error=_text(attrs.get(ATTR_ERROR)) or _interruption(trial),
        best_value=_best_value(values, config.direction),
        cost_usd=cost.usd if cost is not None else None,
        gpu_seconds=cost.gpu_seconds if cost is not None else None,
        cpu_seconds=_cpu_seconds(cost, attrs),
        gpu_type=cost.gpu_type if cost is not None else None,
    )


def _text(value: Any, limit: int = 500) -> str | None:
    """A recorded message as one bounded line (None for none)."""
    if value is None or value == "":
        return None
    return " ".join(str(value).split())[:limit]


def _interruption(trial: FrozenTrial) -> str | None:
    """What ended a running trial's last attempt when it was an infrastructure fault, for the status line."""
    cause = trial.user_attrs.get(ATTR_INTERRUPTION)
    if trial.state != TrialState.RUNNING or not isinstance(cause, str):
        return None
    return f"last interrupted: {cause}"


def _best_value(values: Sequence[float | None], direction: str) -> float | None:
    """The best finite value of ``values`` (None for none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return min(finite) if direction == "minimize" else max(finite)


def _cpu_seconds(cost: TrialCost | None, attrs: Mapping[str, Any]) -> float | None:
    if cost is not None and cost.cpu_seconds is not None:
        return float(cost.cpu_seconds)
    value = attrs.get("cpu_seconds")
    return float(value) if isinstance(value, (int, float)) else None


NEAR_BEST = 0.01
"""How close to the best loss a trial must be for "the cheapest one about as good" (1 %)."""


def spend_summary(
    rows: Sequence[TrialRow],
    config: StudyConfig,
    overhead: Overhead | None = None,
    controller_costs: Iterable[ControllerCost] = (),
) -> SpendSummary:
    """The study's spend so far, its budget left, and the cheapest trial within 1 % of the best loss.

    The loss of a trial is the best value it reported or returned, so a
    pruned trial counts at the point it was stopped; the cost is USD, or
    CPU-seconds where no trial cost money (local processes). ``overhead``
    (warm workers' time outside attempts) and ``controller_costs`` (the
    controller pods') count in the spend and the budget.
    """
    overhead = overhead or Overhead(0.0, 0.0, 0)
    controllers = list(controller_costs)
    controller_usd = math.fsum(c.usd for c in controllers)
    usd = sum(r.cost_usd or 0.0 for r in rows) + overhead.usd + controller_usd
    gpu_seconds = sum(r.gpu_seconds or 0.0 for r in rows)
    cpu = sum(r.cpu_seconds or 0.0 for r in rows)
    guard = BudgetGuard(config.budget.usd, config.budget.gpu_hours)
    usd_left, hours_left = guard.left(Spend(usd, gpu_seconds))
    candidates = [r for r in rows if r.state in ("complete", "pruned") and r.best_value is not None]
    paid = any((r.cost_usd or 0.0) > 0 for r in candidates)
    unit = "USD" if paid or not any(r.cpu_seconds for r in candidates) else "CPU-seconds"

    def cost_of(row: TrialRow) -> float | None:
        return row.cost_usd if unit == "USD" else row.cpu_seconds

    best = _best_value([r.best_value for r in candidates], config.direction)
    cheapest: TrialRow | None = None
    if best is not None:
        near = [
            r for r in candidates
            if r.best_value is not None and abs(r.best_value - best) <= NEAR_BEST * abs(best) and cost_of(r) is not None
        ]
        cheapest = min(near, key=lambda r: (cost_of(r), r.number), default=None)
    return SpendSummary(
        usd=usd,
        gpu_hours=gpu_seconds / 3600.0,
        cpu_seconds=cpu,
        budget_usd=config.budget.usd,
        budget_gpu_hours=config.budget.gpu_hours,
        usd_left=usd_left,
        gpu_hours_left=hours_left,
        best_loss=best,
        cheapest_near_best=cheapest.number if cheapest else None,
        cheapest_cost=cost_of(cheapest) if cheapest else None,
        cost_unit=unit,
        overhead_usd=overhead.usd,
        overhead_seconds=overhead.seconds,
        controller_usd=controller_usd,
        controller_seconds=math.fsum(c.seconds for c in controllers),
        controller_pods=len(controllers),
    )


def best_row(rows: list[TrialRow], direction: str) -> TrialRow | None:
    """The completed trial with the best value."""
    done = [r for r in rows if r.value is not None and math.isfinite(r.value)]
    if not done:
        return None
    return (min if direction == "minimize" else max)(done, key=lambda r: r.value)  # type: ignore[arg-type, return-value]


BEST_SHOWN = 3
"""How many of the best completed trials a screenful of ``hpo status`` always has room for."""

FAILED_SHOWN = 5
"""How many of the most recent failed trials come before the other recent trials on a screenful."""


def rows_by_priority(rows: Sequence[TrialRow], direction: str) -> tuple[list[TrialRow], int]:
    """The trials in the order a screenful of ``hpo status`` takes them, and how many of the first must be shown.

    First every running and queued trial (those must be shown, however
    many), then the :data:`BEST_SHOWN` best completed trials, the
    :data:`FAILED_SHOWN` most recent failed ones, then every other trial,
    the most recent first. A view shows a prefix of this list, in trial order.
    """
    live = [r for r in rows if r.state in ("running", "queued")]
    done = [r for r in rows if r.state == "complete" and r.value is not None and math.isfinite(r.value)]
    done.sort(key=lambda r: (r.value if direction == "minimize" else -r.value, r.number))  # type: ignore[operator]
    failed = [r for r in reversed(rows) if r.state == "fail"]
    first = live + done[:BEST_SHOWN] + failed[:FAILED_SHOWN]
    taken = {r.number for r in first}
    return first + [r for r in reversed(rows) if r.number not in taken], len(live)
