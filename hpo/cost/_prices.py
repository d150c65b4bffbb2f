"""What a GPU-hour costs on RunPod's Secure Cloud, on demand and spot, and where the figures came from.

Prices matter before a pod exists: the budget guard must know what the next
launch may cost before it launches it. Once a pod exists its own ``cost``
(v2) is what it bills at, and that wins over any table here.

The figures come from RunPod's API (on-demand from REST v2
``GET /v2/catalog/gpus``, spot from GraphQL ``gpuTypes``, since v2 has no spot
price), and are cached on disk with their date, so a controller restarted
within :data:`CACHE_MAX_AGE` asks nothing. When the API cannot be reached the
last cache is used whatever its age, and failing that the table shipped here
(:data:`FALLBACK_PRICES`, the user's figures of :data:`FALLBACK_AS_OF`); either
way a warning is logged and :attr:`PriceBook.note` says so for the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from hpo.errors import HpoError

log = logging.getLogger(__name__)

CACHE_MAX_AGE = 6 * 3600.0
"""Seconds a cached price list is used without asking RunPod again (spot prices move, slowly)."""

FALLBACK_AS_OF = "2026-02"
"""The date of :data:`FALLBACK_PRICES`: the user's own RunPod notes, February 2026."""


@dataclass(frozen=True)
class GpuRate:
    """$/GPU-hour of one GPU type in Secure Cloud (None: not sold that way)."""

    on_demand: float | None
    spot: float | None


# fmt: off
FALLBACK_PRICES: Mapping[str, GpuRate] = {
    # The user's Feb 2026 figures, Secure Cloud, $/GPU-hour (RUNPOD.md §6).
    "NVIDIA RTX A5000": GpuRate(0.27, 0.14),
    "NVIDIA RTX A4000": GpuRate(0.25, 0.16),
    "NVIDIA RTX 4000 Ada Generation": GpuRate(0.26, 0.19),
    "NVIDIA GeForce RTX 3090": GpuRate(0.46, 0.22),
    "NVIDIA GeForce RTX 4090": GpuRate(0.59, 0.29),
    "NVIDIA A100 80GB PCIe": GpuRate(1.39, 0.60),
    "NVIDIA A100-SXM4-80GB": GpuRate(1.49, 0.79),
    "NVIDIA H100 PCIe": GpuRate(2.39, 1.35),
    "NVIDIA H100 80GB HBM3": GpuRate(2.69, 1.50),
}
# fmt: on


class PriceSource(Protocol):
    """Where live prices come from (:class:`hpo.backends.runpod.RunPodApi` is one)."""

    def on_demand_prices(self) -> dict[str, float]:
        """Secure Cloud on-demand $/GPU-hour per GPU type."""

    def spot_prices(self) -> dict[str, float]:
        """Secure Cloud spot $/GPU-hour per GPU type."""


@dataclass(frozen=True)
class PriceBook:
    """$/GPU-hour per GPU type, with where and when the figures come from.

    Attributes:
        rates: GPU type id -> its rates.
        source: ``api`` (asked just now), ``cache`` (asked recently), ``stale cache``
            or ``fallback`` (the shipped table); the last two only when RunPod
            could not be asked.
        as_of: When the figures were read (ISO 8601), or the table's date.
        note: Why the figures are not fresh from RunPod, when they are not.
    """

    rates: Mapping[str, GpuRate]
    source: str
    as_of: str
    note: str | None = None

    def hourly(self, gpu_type: str, *, spot: bool, gpu_count: int = 1) -> float | None:
        """$/h of a pod of ``gpu_count`` GPUs of ``gpu_type``, spot or on demand (None if unknown)."""
        rate = self.rates.get(gpu_type)
        if rate is None:
            return None
        price = rate.spot if spot else rate.on_demand
        return None if price is None else price * gpu_count

    def describe(self) -> str:
        """One line for people: where the prices come from."""
        where = {
            "api": "RunPod's API",
            "cache": "RunPod's API (cached)",
            "stale cache": "an old cache of RunPod's prices",
            "fallback": "the price table shipped with runpod-hpo",
        }.get(self.source, self.source)
        return f"prices from {where} as of {self.as_of}" + (f" ({self.note})" if self.note else "")

    def to_json(self) -> dict[str, Any]:
        """The book as JSON (the on-disk cache, and the study's record of its prices)."""
        return {
            "source": self.source,
            "as_of": self.as_of,
            "note": self.note,
            "rates": {k: {"on_demand": v.on_demand, "spot": v.spot} for k, v in sorted(self.rates.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PriceBook:
        rates = {
            str(k): GpuRate(_price(v.get("on_demand")), _price(v.get("spot")))
            for k, v in (data.get("rates") or {}).items()
            if isinstance(v, Mapping)
        }
        return cls(rates, str(data.get("source", "cache")), str(data.get("as_of", "")), data.get("note"))


def fallback_book(note: str | None = None) -> PriceBook:
    """The shipped table, dated."""
    return PriceBook(dict(FALLBACK_PRICES), "fallback", FALLBACK_AS_OF, note)


def price_cache_file(cache_dir: Path, api_url: str) -> Path:
    """Where prices read from ``api_url`` are cached (one file per API, so a fake's never pass for RunPod's)."""
    digest = hashlib.sha256(api_url.encode()).hexdigest()[:16]
    return cache_dir / "prices" / f"runpod-secure-{digest}.json"


def load_price_book(
    source: PriceSource | None,
    *,
    cache_file: Path | None,
    max_age: float = CACHE_MAX_AGE,
    now: Callable[[], float] = time.time,
) -> PriceBook:
    """Prices for the Secure Cloud: a fresh cache, else RunPod's API, else an old cache, else the shipped table.

    Never raises for an unreachable API: the answer then says so in
    :attr:`PriceBook.note` (and a warning is logged), because a price list
    a day old is far better than no budget guard at all.
    """
    cached = _read_cache(cache_file)
    if cached is not None and now() - cached[1] <= max_age:
        book = cached[0]
        return PriceBook(book.rates, "cache", book.as_of)
    if source is None:
        return _offline(cached, "no RunPod API to ask")
    problems: list[str] = []
    on_demand = _ask(source.on_demand_prices, "the GPU catalog (GET /v2/catalog/gpus)", problems)
    spot = _ask(source.spot_prices, "spot prices (GraphQL gpuTypes)", problems)
    if on_demand is None and spot is None:
        return _offline(cached, "; ".join(problems))
    # One half missing: that half from the table (or an old cache), and say which.
    backup = cached[0] if cached is not None else fallback_book()
    types = set(on_demand or {}) | set(spot or {}) | set(backup.rates)
    rates = {
        t: GpuRate(
            (on_demand or {}).get(t) if on_demand is not None else backup.rates.get(t, GpuRate(None, None)).on_demand,
            (spot or {}).get(t) if spot is not None else backup.rates.get(t, GpuRate(None, None)).spot,
        )
        for t in types
    }
    stamp = datetime.fromtimestamp(now(), UTC).isoformat(timespec="seconds")
    note = None
    if problems:
        note = f"{'; '.join(problems)}; those prices from {backup.source} figures of {backup.as_of}"
        log.warning("RunPod prices: %s", note)
    book = PriceBook(rates, "api", stamp, note)
    if not problems:
        _write_cache(cache_file, book, now())
    return book


def _ask(call: Callable[[], dict[str, float]], what: str, problems: list[str]) -> dict[str, float] | None:
    try:
        return {k: float(v) for k, v in call().items()}
    except (HpoError, OSError, ValueError) as exc:
        problems.append(f"cannot read {what}: {exc}")
        return None


def _offline(cached: tuple[PriceBook, float] | None, why: str) -> PriceBook:
    if cached is not None:
        book = cached[0]
        note = f"{why}; using prices cached on {book.as_of}"
        log.warning("RunPod prices: %s", note)
        return PriceBook(book.rates, "stale cache", book.as_of, note)
    note = f"{why}; using the shipped table of {FALLBACK_AS_OF}"
    log.warning("RunPod prices: %s", note)
    return fallback_book(note)


def _read_cache(path: Path | None) -> tuple[PriceBook, float] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
        return PriceBook.from_json(data["book"]), float(data["fetched_at"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no cache, or a broken one: ask again


def _write_cache(path: Path | None, book: PriceBook, fetched_at: float) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fetched_at": fetched_at, "book": book.to_json()}, indent=1))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError as exc:
        log.info("cannot cache RunPod prices in %s: %s", path, exc)


def _price(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
