"""Small records read back from the volume: an attempt's ``launch.json`` and a trial's ``control.json``.

The controller (or its backend) writes them, but they sit on a volume every
pod can write, so a reader trusts nothing in them: each is checked for shape
where it is read, and junk (``[1]``, a price that is a string, a pid of
``10**30``, JSON nested ten thousand deep) is one warning naming the file and
is then read as "no record", never a traceback and never a stalled study.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError

from hpo.errors import HpoError, VolumeNotFoundError
from hpo.volume import Volume

log = logging.getLogger(__name__)

_MAX_INT = 2**53 - 1


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


_Short = Annotated[str, Strict(), Field(max_length=200)]
_Float = Annotated[float, Strict(), AfterValidator(_finite)]


class LaunchRecord(BaseModel):
    """What runs an attempt, as its backend recorded it at launch (``attempts/<a>/launch.json``).

    Every field is optional: the local backend records a pid, the RunPod
    backend a pod; fields this version does not know are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    backend: _Short | None = None
    pid: Annotated[int, Strict(), Field(ge=1, le=2**32)] | None = None
    create_time: _Float | None = None
    host: _Short | None = None
    pod_id: _Short | None = None
    pod_name: _Short | None = None
    gpu_type: _Short | None = None
    spot: Annotated[bool, Strict()] | None = None
    cost_per_hr: Annotated[_Float, Field(ge=0.0, le=10_000.0)] | None = None
    bid_per_gpu: Annotated[_Float, Field(ge=0.0, le=10_000.0)] | None = None  # a spot pod's bid, USD per GPU-hour
    launched_at: _Float | None = None
    worker: Annotated[int, Strict(), Field(ge=0, le=_MAX_INT)] | None = None  # the warm worker's index, if one runs it


class ControlOrder(BaseModel):
    """The controller's order to a trial (``control.json``): prune it, or stop it for the budget."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    action: Literal["prune", "stop"]
    step: Annotated[int, Strict(), Field(ge=0, le=_MAX_INT)] | None = None


def read_launch(volume: Volume, key: str) -> LaunchRecord | None:
    """The launch record at ``key``; None if it is missing, unreadable or junk (junk is one warning)."""
    raw = _read(volume, key)
    if raw is None:
        return None
    try:
        return LaunchRecord.model_validate(raw)
    except ValidationError as exc:
        log.warning("%s: ignoring a malformed launch record (%s)", key, _problem(exc))
        return None


def read_control_order(volume: Volume, key: str) -> str | None:
    """The order at ``key`` (``"prune"`` or ``"stop"``); None if there is none, or it is junk (one warning)."""
    raw = _read(volume, key)
    if raw is None:
        return None
    try:
        return ControlOrder.model_validate(raw).action
    except ValidationError as exc:
        log.warning("%s: ignoring a malformed control file (%s)", key, _problem(exc))
        return None


def _read(volume: Volume, key: str) -> Any:
    """The parsed JSON at ``key``; None (with a warning unless simply missing) if it cannot be had."""
    try:
        return volume.read_json(key)
    except VolumeNotFoundError:
        return None
    except HpoError as exc:
        log.warning("%s", " ".join(str(exc).split())[:300])
        return None


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    text = f"{where}: {first['msg']}" if where else first["msg"]
    return text if len(text) <= 200 else text[:197] + "..."
