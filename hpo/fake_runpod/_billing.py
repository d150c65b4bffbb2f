"""``GET /v2/billing/pods``: a pod's per-second charges, summed into calendar buckets.

RunPod snaps the window to bucket boundaries (``startTime`` down, ``endTime``
up) and emits one record per pod per bucket; the fake does the same over the
pods' billing intervals on the fake clock, so a client reconciling its own
estimate against the bill sees the exact figures the account was charged.
Compute is billed as ``gpuAmount`` for a GPU pod and ``cpuAmount`` for a CPU
pod; disk is free in the fake.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hpo.fake_runpod._clock import FakeClock, format_rfc3339
from hpo.fake_runpod._state import FakePodView

BUCKET_SIZES: tuple[str, ...] = ("hour", "day", "week", "month", "year")


@dataclass(frozen=True)
class BillingQuery:
    """A resolved query: the window in UTC (already snapped to buckets), bucket size, optional pod."""

    start: datetime
    end: datetime
    bucket_size: str
    pod_id: str | None


def resolve_query(
    *,
    now: datetime,
    start: datetime | None,
    end: datetime | None,
    bucket_size: str,
    last_n: int | None,
    pod_id: str | None,
) -> BillingQuery:
    """Apply the spec's defaults (last 30 days, ``day``) and snap the window to whole buckets."""
    if last_n is not None:
        window_end = bucket_end(now, bucket_size)
        window_start = bucket_start(now, bucket_size)
        for _ in range(last_n - 1):
            window_start = bucket_start(window_start - timedelta(microseconds=1), bucket_size)
        return BillingQuery(window_start, window_end, bucket_size, pod_id)
    start = start if start is not None else now - timedelta(days=30)
    end = end if end is not None else now
    return BillingQuery(bucket_start(start, bucket_size), bucket_end(end, bucket_size), bucket_size, pod_id)


def report(query: BillingQuery, pods: Iterable[FakePodView], clock: FakeClock, now: float) -> dict[str, Any]:
    """The ``ListPodBillingResponse`` body for ``query`` over ``pods`` at fake time ``now``."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    totals = {"gpu": 0.0, "cpu": 0.0}
    for pod in pods:
        if query.pod_id is not None and pod.id != query.pod_id:
            continue
        cursor = query.start
        while cursor < query.end:
            following = _next_boundary(cursor, query.bucket_size)
            amount = _charge(pod, clock.from_datetime(cursor), clock.from_datetime(following), now)
            if amount > 0:
                kind = "cpu" if pod.cpu_flavor is not None else "gpu"
                records.append(_record(cursor, following, pod.id, _amounts(**{kind: amount})))
                seen.add(pod.id)
                totals[kind] += amount
            cursor = following
    return {
        "records": records,
        "metadata": {
            "query": {
                "startTime": format_rfc3339(query.start),
                "endTime": format_rfc3339(query.end),
                "bucketSize": query.bucket_size,
                "podId": query.pod_id,
            },
            "recordCount": len(records),
            "uniquePodCount": len(seen),
            "totals": _amounts(**totals),
        },
    }


def _charge(pod: FakePodView, start: float, end: float, now: float) -> float:
    """USD ``pod`` was charged in the fake-time range [start, end)."""
    seconds = 0.0
    for began, ended in pod.billing_intervals:
        stop = min(ended if ended is not None else now, now, end)
        seconds += max(0.0, stop - max(began, start))
    return pod.cost_per_hr * seconds / 3600.0


def _record(start: datetime, end: datetime, pod_id: str, amounts: dict[str, float]) -> dict[str, Any]:
    return {"startTime": format_rfc3339(start), "endTime": format_rfc3339(end), "podId": pod_id, **amounts}


def _amounts(gpu: float = 0.0, cpu: float = 0.0) -> dict[str, float]:
    # The fake bills compute only: disk is free here, so compute is the whole bill.
    return {"totalAmount": gpu + cpu, "gpuAmount": gpu, "cpuAmount": cpu, "diskAmount": 0.0}


def bucket_start(moment: datetime, size: str) -> datetime:
    """The start of the UTC bucket of ``size`` that holds ``moment`` (weeks start on Monday)."""
    moment = moment.astimezone(UTC)
    if size == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if size == "day":
        return day
    if size == "week":
        return day - timedelta(days=day.weekday())
    if size == "month":
        return day.replace(day=1)
    if size == "year":
        return day.replace(month=1, day=1)
    raise ValueError(f"unknown bucket size {size!r}")


def bucket_end(moment: datetime, size: str) -> datetime:
    """``moment`` if it is a bucket boundary, else the end of the bucket holding it."""
    start = bucket_start(moment, size)
    if start == moment.astimezone(UTC):
        return start
    return _next_boundary(start, size)


def _next_boundary(start: datetime, size: str) -> datetime:
    if size == "hour":
        return start + timedelta(hours=1)
    if size == "day":
        return start + timedelta(days=1)
    if size == "week":
        return start + timedelta(weeks=1)
    if size == "month":
        return (
            start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        )
    return start.replace(year=start.year + 1)
