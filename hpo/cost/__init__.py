"""What trials cost: GPU prices, billed seconds per attempt, and the study's budget guard.

Offers the price list (:class:`PriceBook`, read by :func:`load_price_book`
from a :class:`PriceSource` such as RunPod's API, cached on disk, with a dated
fallback table), the meter of billed seconds (:class:`CostMeter`, its
per-attempt records :class:`AttemptBill` and per-trial totals
:class:`TrialCost`), what warm workers and controller pods billed outside
any attempt (:class:`WorkerOverhead`, :class:`ControllerCost`), and the
budget guard (:class:`BudgetGuard`, judging a :class:`Spend`). It knows workers only through :mod:`hpo.workers`, never a
backend.
"""

from __future__ import annotations

from hpo.cost._billing import (
    ATTR_COST_USD,
    ATTR_GPU_SECONDS,
    ATTR_GPU_TYPE,
    COST_RECORD_PREFIX,
    AttemptBill,
    CostMeter,
    TrialCost,
    load_bills,
    save_bills,
    total,
    trial_costs,
)
from hpo.cost._budget import BudgetGuard, Spend
from hpo.cost._controller import (
    CONTROLLER_RECORD_PREFIX,
    ControllerCost,
    controller_usd,
    load_controller_costs,
    save_controller_cost,
)
from hpo.cost._overhead import (
    OVERHEAD_RECORD_PREFIX,
    Overhead,
    WorkerOverhead,
    load_overhead,
    save_overhead,
    study_overhead,
    total_overhead,
)
from hpo.cost._prices import (
    CACHE_MAX_AGE,
    FALLBACK_AS_OF,
    FALLBACK_PRICES,
    GpuRate,
    PriceBook,
    PriceSource,
    fallback_book,
    load_price_book,
    price_cache_file,
)

PRICES_ATTR = "hpo:prices"
"""The study system attribute recording where the last run's prices came from (for the report)."""

__all__ = [
    "ATTR_COST_USD",
    "ATTR_GPU_SECONDS",
    "ATTR_GPU_TYPE",
    "CACHE_MAX_AGE",
    "CONTROLLER_RECORD_PREFIX",
    "COST_RECORD_PREFIX",
    "FALLBACK_AS_OF",
    "FALLBACK_PRICES",
    "OVERHEAD_RECORD_PREFIX",
    "PRICES_ATTR",
    "AttemptBill",
    "BudgetGuard",
    "ControllerCost",
    "CostMeter",
    "GpuRate",
    "Overhead",
    "PriceBook",
    "PriceSource",
    "Spend",
    "TrialCost",
    "WorkerOverhead",
    "controller_usd",
    "fallback_book",
    "load_bills",
    "load_controller_costs",
    "load_overhead",
    "load_price_book",
    "price_cache_file",
    "save_bills",
    "save_controller_cost",
    "save_overhead",
    "study_overhead",
    "total",
    "total_overhead",
    "trial_costs",
]
