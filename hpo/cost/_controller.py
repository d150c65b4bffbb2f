"""What the study's controller pods billed: a controller running on a RunPod pod of its own is part of the spend.

A controller started by ``hpo run --remote`` runs on a CPU pod
(``hpo-<study>-controller``) that bills by the second like any worker. Its
cost is kept per pod in the study's system attributes
(``hpo:controller:<pod id>``), rewritten as the pod's bill grows, so that the
budget guard (of this run and every later one) and ``hpo status`` count it:
the trials' costs, the warm workers' overhead and the controller pods' costs
are what the provider billed. A pod whose container restarted keeps its one
record (the pod's life, not the process's). A controller on the user's own
machine costs nothing and has no record.

The records come from the journal, on a volume every pod can write: a record
that is not one (a number that is not finite or is negative, a field of the
wrong type, a key that names another pod) is skipped, never counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from optuna.storages import BaseStorage

from hpo.cost._attrs import records_under

CONTROLLER_RECORD_PREFIX = "hpo:controller:"  # + the controller pod's id

MAX_POD_CHARS = 64
"""The longest pod id a record may carry (RunPod's are 14 characters)."""


@dataclass(frozen=True)
class ControllerCost:
    """One controller pod's bill so far.

    Attributes:
        pod: The pod's RunPod id.
        usd: What it has cost, from ``started_at`` to the record's time.
        seconds: Its billed seconds over that time.
        rate_per_hour: What it bills an hour (USD) while it runs.
        started_at: Epoch seconds (the provider's clock) it started billing.
        billed: Whether ``usd`` comes from the provider's bill (else an estimate from the rate and the time).
    """

    pod: str
    usd: float
    seconds: float
    rate_per_hour: float
    started_at: float
    billed: bool

    def usd_at(self, now: float) -> float:
        """Its cost at ``now`` if it has billed on at its rate since the record (a billed record is final)."""
        if self.billed:
            return self.usd
        return self.usd + self.rate_per_hour * max(0.0, now - self.started_at - self.seconds) / 3600.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ControllerCost:
        """A record as saved; ``ValueError`` (or ``KeyError``, ``TypeError``) for anything that is not one."""
        pod = data["pod"]
        if not isinstance(pod, str) or not 0 < len(pod) <= MAX_POD_CHARS:
            raise ValueError(f"'pod' must be a string of 1 to {MAX_POD_CHARS} characters")
        billed = data.get("billed", False)
        if not isinstance(billed, bool):
            raise ValueError("'billed' must be true or false")
        return cls(
            pod,
            _amount(data, "usd"),
            _amount(data, "seconds"),
            _amount(data, "rate_per_hour"),
            _amount(data, "started_at"),
            billed,
        )


def _amount(data: Mapping[str, Any], key: str) -> float:
    value = data[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key!r} must be a finite number, not negative")
    return float(value)


def save_controller_cost(storage: BaseStorage, study_id: int, record: ControllerCost) -> None:
    """Write (or replace) one controller pod's record."""
    storage.set_study_system_attr(study_id, f"{CONTROLLER_RECORD_PREFIX}{record.pod}", record.to_json())


def load_controller_costs(system_attrs: Mapping[str, Any]) -> dict[str, ControllerCost]:
    """Every controller pod's record, by pod id (malformed ones skipped: the journal is on a shared volume)."""
    # A record under another pod's name is not what save_controller_cost writes: skipped too.
    records = records_under(system_attrs, CONTROLLER_RECORD_PREFIX, ControllerCost.from_json)
    return {record.pod: record for name, record in records if name == record.pod}


def controller_usd(records: Iterable[ControllerCost]) -> float:
    """What the controller pods cost in total, USD (as recorded)."""
    return math.fsum(record.usd for record in records)
