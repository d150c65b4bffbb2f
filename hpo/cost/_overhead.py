"""What warm workers billed outside any attempt: provisioning, image pull, idle time, duplicates.

A warm worker (:mod:`hpo.pool`) runs attempt after attempt; each attempt's
record (:class:`~hpo.cost.AttemptBill`) holds its share of the worker's bill,
and the rest of the bill is the study's *overhead*, kept per worker in the
study's system attributes (``hpo:overhead:<worker id>``) so that a later run,
``hpo status`` and ``hpo report`` see it: the trials' costs plus the overhead
are what the provider billed. A worker that lives through two controller runs
keeps one record, rewritten by the newer run (which rebuilt its whole life).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from optuna.storages import BaseStorage

from hpo.cost._attrs import records_under

OVERHEAD_RECORD_PREFIX = "hpo:overhead:"  # + the worker's backend id (a pod id, pid@start)


@dataclass(frozen=True)
class WorkerOverhead:
    """One warm worker's time and money not spent in an attempt.

    Attributes:
        worker: The backend's id of the worker.
        index: Its index in the study (``hpo-<study>-w<index>``).
        usd: Its bill (or estimate) minus its attempts' shares.
        seconds: Its billed seconds outside attempts.
        billed: Whether ``usd`` comes from the provider's bill (else the meter's estimate).
    """

    worker: str
    index: int
    usd: float
    seconds: float
    billed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkerOverhead:
        usd, seconds = float(data["usd"]), float(data["seconds"])
        if not (math.isfinite(usd) and math.isfinite(seconds)):
            raise ValueError("not finite")
        return cls(str(data["worker"]), int(data["index"]), usd, seconds, bool(data.get("billed", False)))


def save_overhead(storage: BaseStorage, study_id: int, record: WorkerOverhead) -> None:
    """Write (or replace) one worker's overhead record."""
    storage.set_study_system_attr(study_id, f"{OVERHEAD_RECORD_PREFIX}{record.worker}", record.to_json())


def load_overhead(system_attrs: Mapping[str, Any]) -> dict[str, WorkerOverhead]:
    """Every worker's overhead record, by worker id (malformed ones skipped: the journal is on a shared volume)."""
    records = records_under(system_attrs, OVERHEAD_RECORD_PREFIX, WorkerOverhead.from_json)
    return {record.worker: record for _, record in records}


@dataclass(frozen=True)
class Overhead:
    """The study's overhead in total: USD, billed seconds, and how many workers it spans."""

    usd: float
    seconds: float
    workers: int


def total_overhead(records: Iterable[WorkerOverhead]) -> Overhead:
    records = list(records)
    return Overhead(
        math.fsum(r.usd for r in records), math.fsum(r.seconds for r in records), len(records)
    )


def study_overhead(storage: BaseStorage, study_id: int) -> Overhead:
    """The study's overhead as its records stand (zero for a study without warm workers)."""
    return total_overhead(load_overhead(storage.get_study_system_attrs(study_id)).values())
