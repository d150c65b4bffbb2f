"""The trial user attributes the controller keeps, and the rule that objectives cannot write them.

The controller's bookkeeping (attempts launched, preemptions, the error, the
cost) lives in each trial's user attributes, so optuna-dashboard shows it. An
objective's ``trial.set_user_attr`` lands in the same mapping, written by
code on a machine the controller does not control, so these keys are
reserved: the agent refuses them with a clear error, and the controller
ignores them in an event file (a pod may write anything there). Readers
still read them defensively (:func:`int_attr`, :func:`float_attr`): a study
written before the rule existed may hold anything under them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

ATTR_ATTEMPTS = "attempts"  # attempts launched so far; the current one is attempts - 1
ATTR_PREEMPTIONS = "preemptions"
ATTR_ERROR = "error"
# Once written after every report, which doubled the journal; no longer written. Readers take
# the last step from the intermediate values (``max(steps)``), which old studies have too; the
# key stays reserved, so an objective cannot put something else under it.
ATTR_LAST_STEP = "last_step"
ATTR_CPU_SECONDS = "cpu_seconds"  # CPU time the trial's processes used (local backend)
ATTR_QUEUED = "queued"  # True while the current attempt waits for capacity
ATTR_INTERRUPTION = "interruption"  # the infrastructure fault (volume, network) that ended an attempt, if one did
ATTR_BUDGET_STOPS = "budget_stops"  # attempts ended by a budget stop (they do not count against max_attempts)
ATTR_COST_USD = "cost_usd"  # the trial's spend so far, USD
ATTR_GPU_SECONDS = "gpu_seconds"  # GPU-seconds billed: billed seconds x GPUs per pod
ATTR_GPU_TYPE = "gpu_type"  # the GPU type(s) its attempts ran on
# The prune order as decided (step, attempt, events_read), told with the verdict: control.json is
# written after the tell, so a controller killed in between leaves only this to say what the decision saw.
ATTR_PRUNE_ORDER = "hpo:prune_order"

RESERVED_USER_ATTRS = frozenset(
    {
        ATTR_ATTEMPTS, ATTR_PREEMPTIONS, ATTR_ERROR, ATTR_LAST_STEP, ATTR_CPU_SECONDS, ATTR_QUEUED,
        ATTR_INTERRUPTION, ATTR_BUDGET_STOPS, ATTR_COST_USD, ATTR_GPU_SECONDS, ATTR_GPU_TYPE,
    }
)
RESERVED_PREFIX = "hpo:"  # any key starting with it is ours too (room to grow without breaking objectives)


def is_reserved(key: str) -> bool:
    """True for a user-attribute key only the controller may write."""
    return key in RESERVED_USER_ATTRS or key.startswith(RESERVED_PREFIX)


def int_attr(attrs: Mapping[str, Any], key: str, default: int = 0) -> int:
    """``attrs[key]`` as a non-negative int, or ``default`` when it is missing or not a sane count."""
    value = attrs.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        if key in attrs:
            log.warning("trial attribute %r holds %r, not a count; using %d", key, value, default)
        return default
    return int(value)


def float_attr(attrs: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    """``attrs[key]`` as a finite float, or ``default`` when it is missing or not a number."""
    value = attrs.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return float(value)
