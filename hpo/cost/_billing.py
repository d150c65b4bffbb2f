"""Billed seconds per attempt: the controller's meter, and the records a study keeps of it.

RunPod bills a pod per second from its creation (provisioning and image pull
included) until it stops or is terminated. The controller sees each pod once
per poll, so it meters each attempt from the pod's own creation time and rate
(its ``cost``) to the moment the pod was last seen gone or was terminated: an
estimate that errs high by at most one poll, the safe side for a budget. At
the end of a run the provider's bill (``GET /v2/billing/pods``) replaces the
estimate of every attempt it covers, to the cent.

Each trial's attempts are kept in the study's system attribute
``hpo:cost:<trial>`` (JSON, one record per attempt): study attributes stay
writable after a trial is told, unlike the trial's own, so a bill that arrives
after the trial finished still lands. The trial's user attributes
``cost_usd``, ``gpu_seconds`` and ``gpu_type`` mirror the totals for the
dashboard while it runs and as of its end; readers (``hpo status``,
``hpo report``) prefer the records.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from hpo.trial_attrs import ATTR_COST_USD, ATTR_GPU_SECONDS, ATTR_GPU_TYPE, float_attr
from hpo.workers import AttemptRef, WorkerHandle

COST_RECORD_PREFIX = "hpo:cost:"  # + trial number: the study system attribute holding its attempts


@dataclass
class AttemptBill:
    """The billing of one attempt.

    Attributes:
        attempt: The attempt's number.
        worker: The backend's id of its worker (a pod id).
        usd_per_hr: The rate the worker bills at (all its GPUs).
        gpu_count: GPUs it holds (0 for a local process).
        gpu_type: Their type.
        start: When billing began (epoch seconds: the pod's creation).
        end: When billing stopped, as seen from here; None while it bills.
        seen: The last time the worker was seen alive.
        billed_usd: What the provider's bill says, once read (then it wins).
        cpu_seconds: CPU time the attempt's process used, as its final event says (what a
            free local worker costs; also read after the trial was told, e.g. once pruned).
    """

    attempt: int
    worker: str
    usd_per_hr: float
    gpu_count: int
    gpu_type: str | None
    start: float
    end: float | None
    seen: float
    billed_usd: float | None = None
    cpu_seconds: float | None = None

    def seconds(self, now: float) -> float:
        """Billed seconds: from the bill at the worker's rate, else from start to end (or ``now``)."""
        if self.billed_usd is not None and self.usd_per_hr > 0:
            return self.billed_usd / self.usd_per_hr * 3600.0
        return max(0.0, (self.end if self.end is not None else now) - self.start)

    def usd(self, now: float) -> float:
        """USD billed (the bill where read, else the estimate)."""
        if self.billed_usd is not None:
            return self.billed_usd
        return self.usd_per_hr * self.seconds(now) / 3600.0

    def gpu_seconds(self, now: float) -> float:
        return self.seconds(now) * self.gpu_count

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttemptBill:
        return cls(
            attempt=int(data["attempt"]),
            worker=str(data["worker"]),
            usd_per_hr=float(data.get("usd_per_hr") or 0.0),
            gpu_count=int(data.get("gpu_count") or 0),
            gpu_type=data.get("gpu_type"),
            start=float(data["start"]),
            end=None if data.get("end") is None else float(data["end"]),
            seen=float(data.get("seen") or data["start"]),
            billed_usd=None if data.get("billed_usd") is None else float(data["billed_usd"]),
            cpu_seconds=None if data.get("cpu_seconds") is None else float(data["cpu_seconds"]),
        )


@dataclass(frozen=True)
class TrialCost:
    """A trial's totals over its attempts.

    ``source`` is ``billing`` when the provider's bill covers every paid
    attempt, ``estimate`` when none, ``mixed`` in between, ``free`` when no
    attempt cost anything (local processes), ``attrs`` when only the trial's
    user attributes were there to read.
    """

    usd: float
    gpu_seconds: float
    seconds: float
    gpu_types: tuple[str, ...]
    source: str
    billing: bool = False  # some attempt is still billing
    cpu_seconds: float | None = None  # summed over the attempts that said (None: none did)

    @property
    def gpu_type(self) -> str | None:
        return ", ".join(self.gpu_types) or None


def total(bills: Iterable[AttemptBill], now: float) -> TrialCost:
    """The totals of one trial's attempts at ``now``."""
    bills = list(bills)
    types: list[str] = []
    for bill in sorted(bills, key=lambda b: b.attempt):
        if bill.gpu_type and bill.gpu_type not in types:
            types.append(bill.gpu_type)
    paid = [b for b in bills if b.usd_per_hr > 0 or b.billed_usd is not None]
    billed = sum(b.billed_usd is not None for b in paid)
    if not paid:
        source = "free"
    else:
        source = "billing" if billed == len(paid) else "estimate" if billed == 0 else "mixed"
    cpu = [b.cpu_seconds for b in bills if b.cpu_seconds is not None]
    return TrialCost(
        usd=sum(b.usd(now) for b in bills),
        gpu_seconds=sum(b.gpu_seconds(now) for b in bills),
        seconds=sum(b.seconds(now) for b in bills),
        gpu_types=tuple(types),
        source=source,
        billing=any(b.end is None for b in bills),
        cpu_seconds=sum(cpu) if cpu else None,
    )


class CostMeter:
    """Every attempt's bill in one study, fed by the controller's poll cycles.

    Times are epoch seconds on the clock the controller is given (the
    provider's clock, as a pod's creation time is on it). A record is kept
    per worker: should an attempt ever have had two (a create RunPod answered
    with an error but made anyway), both are paid for, so both are counted.
    """

    def __init__(self) -> None:
        self._bills: dict[int, dict[tuple[int, str], AttemptBill]] = {}

    # -- feeding ----------------------------------------------------------------------

    def load(self, trial: int, bills: Iterable[AttemptBill]) -> None:
        """Take a trial's records as a previous controller left them."""
        self._bills[trial] = {(bill.attempt, bill.worker): bill for bill in bills}

    def observe(self, ref: AttemptRef, handle: WorkerHandle, now: float) -> bool:
        """``handle`` runs ``ref`` and is alive at ``now``. True if the record is new or reopened."""
        billing = handle.billing
        rate = billing.usd_per_hr if billing is not None and billing.usd_per_hr is not None else 0.0
        trial = self._bills.setdefault(ref.trial, {})
        bill = trial.get((ref.attempt, handle.id))
        if bill is None:
            start = billing.started_at if billing is not None and billing.started_at is not None else now
            trial[(ref.attempt, handle.id)] = AttemptBill(
                attempt=ref.attempt,
                worker=handle.id,
                usd_per_hr=rate,
                gpu_count=billing.gpu_count if billing is not None else 0,
                gpu_type=billing.gpu_type if billing is not None else None,
                start=min(start, now),
                end=None,
                seen=now,
            )
            return True
        bill.seen = now
        # A rate learned late (a pod listed before its price was known) replaces an unknown one.
        bill.usd_per_hr = max(bill.usd_per_hr, rate)
        if billing is not None and billing.gpu_type and not bill.gpu_type:
            bill.gpu_type = billing.gpu_type
        if bill.end is not None:  # listed again after it looked gone: it bills on
            bill.end = None
            return True
        return False

    def sweep(
        self, live: Mapping[AttemptRef, WorkerHandle], now: float, extras: Iterable[WorkerHandle] = ()
    ) -> set[int]:
        """Record one poll's listing: every live worker seen, every open bill not listed ended at ``now``.

        ``extras`` are live workers that duplicate an attempt (two pods with one
        name): they bill too, so each has a record of its own until it is gone.
        Returns the trials whose records changed (new attempt, ended, reopened).
        """
        handles = [*live.items(), *((handle.ref, handle) for handle in extras)]
        changed = {ref.trial for ref, handle in handles if self.observe(ref, handle, now)}
        listed = {(ref.trial, ref.attempt, handle.id) for ref, handle in handles}
        for trial, bill in self._all():
            if bill.end is None and (trial, bill.attempt, bill.worker) not in listed:
                bill.end = now
                changed.add(trial)
        return changed

    def ended(self, ref: AttemptRef, now: float) -> bool:
        """The attempt's worker was terminated at ``now``. True if that closed an open bill."""
        closed = False
        for bill in self._attempt(ref):
            if bill.end is None:
                bill.end = now
                closed = True
        return closed

    def add_cpu_seconds(self, ref: AttemptRef, seconds: float) -> bool:
        """The attempt's final event says it used ``seconds`` of CPU. True if that changed its record."""
        bills = self._attempt(ref)
        if not bills or bills[-1].cpu_seconds == seconds:
            return False
        bills[-1].cpu_seconds = seconds  # the process that wrote the event is the attempt's latest worker
        return True

    def close_unseen(self, now: float, live: Mapping[AttemptRef, WorkerHandle]) -> set[int]:
        """End the open bills a previous controller left whose worker is gone, at the last time it was seen.

        Used once, on recovery: the worker may have ended any time since, and
        ``seen`` errs low by at most that controller's save interval; the
        bill, read right after, settles it where it can.
        """
        changed = set()
        listed = {(ref.trial, ref.attempt, handle.id) for ref, handle in live.items()}
        for trial, bill in self._all():
            if bill.end is None and (trial, bill.attempt, bill.worker) not in listed:
                bill.end = min(max(bill.seen, bill.start), now)
                changed.add(trial)
        return changed

    def reconcile(self, billed: Mapping[str, float]) -> set[int]:
        """Replace the estimate of every ended attempt whose worker the bill names. Returns changed trials."""
        changed = set()
        for trial, bill in self._all():
            amount = billed.get(bill.worker)
            if bill.end is None or amount is None or bill.usd_per_hr <= 0:
                continue  # still billing (the bill is not final), not billed yet, or free
            if bill.billed_usd is None or not math.isclose(bill.billed_usd, amount, rel_tol=1e-12):
                bill.billed_usd = amount
                changed.add(trial)
        return changed

    # -- reading ----------------------------------------------------------------------

    def _all(self) -> Iterator[tuple[int, AttemptBill]]:
        for trial, bills in self._bills.items():
            for bill in bills.values():
                yield trial, bill

    def _attempt(self, ref: AttemptRef) -> list[AttemptBill]:
        bills = self._bills.get(ref.trial, {})
        return sorted((b for b in bills.values() if b.attempt == ref.attempt), key=lambda b: b.start)

    def bills(self, trial: int) -> list[AttemptBill]:
        """The trial's attempt records, in attempt order."""
        return sorted(self._bills.get(trial, {}).values(), key=lambda b: (b.attempt, b.start))

    def trials(self) -> list[int]:
        return sorted(self._bills)

    def trial_cost(self, trial: int, now: float) -> TrialCost:
        return total(self.bills(trial), now)

    def spent_usd(self, now: float) -> float:
        return sum(bill.usd(now) for _, bill in self._all())

    def spent_gpu_seconds(self, now: float) -> float:
        return sum(bill.gpu_seconds(now) for _, bill in self._all())

    def billing_rate(self) -> tuple[float, int]:
        """USD per hour and GPUs of every attempt still billing."""
        open_bills = [bill for _, bill in self._all() if bill.end is None]
        return sum(b.usd_per_hr for b in open_bills), sum(b.gpu_count for b in open_bills)


# -- the records in the study's storage -------------------------------------------------


def save_bills(storage: BaseStorage, study_id: int, trial: int, bills: list[AttemptBill]) -> None:
    """Write a trial's attempt records to the study (replacing the previous ones)."""
    storage.set_study_system_attr(study_id, f"{COST_RECORD_PREFIX}{trial}", [bill.to_json() for bill in bills])


def load_bills(system_attrs: Mapping[str, Any]) -> dict[int, list[AttemptBill]]:
    """Every trial's attempt records from the study's system attributes (malformed ones skipped)."""
    found: dict[int, list[AttemptBill]] = {}
    for key, value in system_attrs.items():
        if not key.startswith(COST_RECORD_PREFIX) or not isinstance(value, list):
            continue
        try:
            trial = int(key[len(COST_RECORD_PREFIX) :])
            found[trial] = [AttemptBill.from_json(item) for item in value]
        except (ValueError, KeyError, TypeError):
            continue
    return found


def trial_costs(storage: BaseStorage, study_id: int, trials: Iterable[FrozenTrial], now: float) -> dict[int, TrialCost]:
    """Each trial's cost: from its attempt records, else from its user attributes (an older study)."""
    records = load_bills(storage.get_study_system_attrs(study_id))
    costs: dict[int, TrialCost] = {}
    for trial in trials:
        bills = records.get(trial.number)
        if bills:
            costs[trial.number] = total(bills, now)
        elif ATTR_COST_USD in trial.user_attrs:
            attrs = trial.user_attrs
            gpu_type = attrs.get(ATTR_GPU_TYPE)
            cpu = attrs.get("cpu_seconds")
            costs[trial.number] = TrialCost(
                usd=float_attr(attrs, ATTR_COST_USD),
                gpu_seconds=float_attr(attrs, ATTR_GPU_SECONDS),
                seconds=float("nan"),
                gpu_types=tuple(t.strip() for t in gpu_type.split(",")) if isinstance(gpu_type, str) and gpu_type else (),
                source="attrs",
                cpu_seconds=float_attr(attrs, "cpu_seconds") if isinstance(cpu, (int, float)) else None,
            )
    return costs
