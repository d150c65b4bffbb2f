"""What each warm worker's bill paid for: the attempts it ran (their shares) and the rest (the overhead).

The provider bills a worker (a pod) per second from its creation to its end,
whatever it did. The pool keeps, per worker, the attempts it ran and when each
one's *share* of the bill began and ended, on the provider's clock:

* a share begins when the worker logged the attempt's ``StartEntry`` and ends
  when it logged its ``EndEntry`` (or the worker ended first). The times come
  from the log but are clamped into the window the pool itself observed (no
  earlier than the assignment, the worker's creation and the previous poll;
  no later than the poll that read the entry), so a worker's clock or its
  lies move cost only within one poll, and only between its own attempt and
  the overhead;
* everything else the worker billed (provisioning, image pull, the gap before
  a start and after an end, idle time, a duplicate pod's whole life) is the
  study's overhead.

:func:`split_bill` turns a worker's bill into shares and overhead so that they
add up to the bill exactly: each attempt gets its seconds at the worker's
rate, capped by what the bill has left, in the order they ran, and the
overhead takes the remainder (rounding included).

Separately, the *meter's* view (what the controller estimates while the run
goes): an attempt's handle bills from ``metered_from`` (its launch or
assignment) to ``metered_to`` (the poll that stopped listing it), and
:meth:`WorkerLedger.unmetered_seconds` is what no handle covers, so the budget
guard counts idle workers without counting provisioning twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hpo.workers import AttemptRef


@dataclass
class Share:
    """One attempt's slice of its worker's bill.

    Attributes:
        id: The attempt's handle id (``<worker id>/<assignment seq>``), what the cost records name.
        ref: The attempt.
        start: When its share began (its ``StartEntry``, clamped); None: it never started.
        end: When its share ended; None: it still runs.
        metered_from: Where its handle's billing started (what the controller's meter counts from).
        metered_to: When the pool stopped listing it (the meter's end); None while listed.
    """

    id: str
    ref: AttemptRef
    start: float | None
    end: float | None
    metered_from: float
    metered_to: float | None = None

    def seconds(self, until: float) -> float:
        """Seconds of its share, counting an open one up to ``until``."""
        if self.start is None:
            return 0.0
        end = self.end if self.end is not None else until
        return max(0.0, min(end, until) - self.start)

    def metered_seconds(self, since: float, until: float) -> float:
        """Seconds its handle bills within ``[since, until]``."""
        end = self.metered_to if self.metered_to is not None else until
        return max(0.0, min(end, until) - max(self.metered_from, since))


@dataclass(frozen=True)
class Split:
    """A worker's bill, divided: USD per attempt (by handle id) and the overhead's USD."""

    shares: dict[str, float]
    overhead_usd: float


@dataclass
class WorkerLedger:
    """One worker's bill and what it paid for.

    Kept after the worker is gone (its bill settles later); ``duplicate`` marks
    a pod the pool terminated at sight (a second pod with one index, a stray),
    whose whole bill is overhead.
    """

    id: str
    index: int
    usd_per_hr: float
    gpu_count: int
    gpu_type: str | None
    created_at: float
    ended_at: float | None = None
    shares: list[Share] = field(default_factory=list)
    duplicate: bool = False

    def until(self, now: float) -> float:
        """The end of its billed life so far."""
        return max(self.created_at, self.ended_at if self.ended_at is not None else now)

    def lifetime(self, now: float) -> float:
        return self.until(now) - self.created_at

    def share_seconds(self, now: float) -> list[tuple[str, float]]:
        """Each attempt's seconds, in the order they ran."""
        until = self.until(now)
        ordered = sorted(self.shares, key=lambda s: (s.start if s.start is not None else math.inf, s.id))
        return [(share.id, share.seconds(until)) for share in ordered]

    def split(self, bill: float, now: float) -> Split:
        """The bill ``bill`` (USD), divided across this worker's attempts and its overhead."""
        return split_bill(bill, self.usd_per_hr, self.share_seconds(now))

    def overhead_seconds(self, now: float, bill: float | None) -> float:
        """Billed seconds no attempt's share covers: from the bill at its rate where known, else from the clock."""
        if bill is not None and self.usd_per_hr > 0:
            return self.split(bill, now).overhead_usd / self.usd_per_hr * 3600.0
        return max(0.0, self.lifetime(now) - sum(seconds for _, seconds in self.share_seconds(now)))

    def overhead_usd(self, now: float, bill: float | None) -> float:
        """The overhead's USD: the bill less the shares where the bill is known, else the estimate."""
        if bill is not None:
            return self.split(bill, now).overhead_usd
        return self.usd_per_hr * self.overhead_seconds(now, None) / 3600.0

    def unmetered_seconds(self, now: float) -> float:
        """Seconds of its life so far that no attempt's handle bills for (idle, provisioning for nobody)."""
        until = self.until(now)
        covered = sum(share.metered_seconds(self.created_at, until) for share in self.shares)
        return max(0.0, self.lifetime(now) - covered)


def split_bill(bill: float, usd_per_hr: float, seconds: list[tuple[str, float]]) -> Split:
    """Divide ``bill`` (USD) across attempts that ran ``seconds`` each (in order) at ``usd_per_hr``.

    Each attempt gets its seconds at the rate (rounded to a millionth of a
    dollar), capped by what is left of the bill; the overhead is the rest, so
    the shares and the overhead add up to the bill exactly. A bill that is
    not a finite non-negative number counts as zero.
    """
    total = bill if math.isfinite(bill) and bill > 0 else 0.0
    rate = usd_per_hr if math.isfinite(usd_per_hr) and usd_per_hr > 0 else 0.0
    shares: dict[str, float] = {}
    left = total
    for share_id, secs in seconds:
        usd = min(round(rate * max(0.0, secs) / 3600.0, 6), max(0.0, left))
        shares[share_id] = usd
        left -= usd
    return Split(shares, total - math.fsum(shares.values()))
