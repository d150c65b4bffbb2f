"""The fake clock: fake seconds that run ``time_scale`` times faster than real ones.

Billing, provisioning, restart delays and kill grace periods all read this
clock, so a rehearsal of hours of RunPod time takes minutes, and tests can
jump it forward (:meth:`FakeClock.advance`) instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class FakeClock:
    """Monotonic fake time in seconds since the fake started, mapped to UTC datetimes.

    Fake second 0 is the real UTC instant the clock was made, so timestamps
    the API shows (``createdAt``, billing buckets) look current.
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.time_scale = float(time_scale)
        self._lock = threading.Lock()
        self._real_start = time.monotonic()
        self._offset = 0.0  # fake seconds added by advance()
        self.epoch = datetime.now(UTC).replace(microsecond=0)

    def now(self) -> float:
        """Fake seconds elapsed since the clock was made."""
        with self._lock:
            return (time.monotonic() - self._real_start) * self.time_scale + self._offset

    def advance(self, seconds: float) -> None:
        """Jump the fake clock forward (the next tick applies whatever fell due)."""
        if seconds < 0:
            raise ValueError("the fake clock only moves forward")
        with self._lock:
            self._offset += seconds

    def real_seconds(self, fake_seconds: float) -> float:
        """How long ``fake_seconds`` take in real time."""
        return fake_seconds / self.time_scale

    def to_datetime(self, fake_seconds: float) -> datetime:
        """The UTC datetime a fake instant stands for."""
        return self.epoch + timedelta(seconds=fake_seconds)

    def from_datetime(self, moment: datetime) -> float:
        """The fake instant of a datetime (naive datetimes are taken as UTC)."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (moment - self.epoch).total_seconds()

    def iso(self, fake_seconds: float) -> str:
        """RFC 3339 UTC timestamp of a fake instant, RunPod v2 style (``2026-06-01T12:00:00Z``)."""
        return format_rfc3339(self.to_datetime(fake_seconds))


def format_rfc3339(moment: datetime) -> str:
    """``2026-06-01T12:00:00Z``, with milliseconds only when the instant has them."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
