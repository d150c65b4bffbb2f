"""The loss axis: one decision, taken once, for every picture of a study (HTML report, dashboard, PNG).

Two rules, in this order:

1. **Outliers are clipped, and the plot says so.** One diverged trial (a
   loss of 10 among losses near 0.3) stretches a linear axis until the
   front is a flat line along its bottom, and even a log axis gives the
   front a sliver when the outlier is far enough off. A loss is an outlier
   when it is worse than Tukey's "far out" fence of the plotted losses: the
   third quartile plus three inter-quartile ranges (the first quartile minus
   three for a metric to maximize; better losses are never clipped), measured
   in decades when every loss is positive (losses compare by ratio), else in
   the metric's own units. Outliers are drawn on the plot's worse edge as
   triangles pointing off it, with their true loss in the hover text, and the
   plot's title says how many there are and how bad ("1 trial off the scale
   (val_loss > 2.31, worst 10): ▲ on the top edge"). With fewer than
   :data:`MIN_LOSSES_TO_CLIP` losses nothing is clipped: quartiles of four
   points say nothing. The table and the CSV keep every trial as it is.
2. **Log when the losses span more than a decade.** The axis is logarithmic
   when the losses left on the plot are all positive and the largest is more
   than ten times the smallest, else linear.

Clipping first, then the scale: a study whose losses sit between 2.1 and 2.5
with one trial at 40 gets a linear axis over 2.1 to 2.5 and one triangle,
not a log axis on which 2.1 to 2.5 is a few pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

MIN_LOSSES_TO_CLIP = 5
"""The fewest plotted losses for which outliers are looked for."""

FENCE_IQRS = 3.0
"""How many inter-quartile ranges beyond the quartile a loss must lie to be clipped (Tukey's "far out")."""

DECADE = 10.0
"""Largest over smallest loss above which the axis is logarithmic."""

_EDGE_GAP = 0.08  # where the clipped losses are drawn: this fraction of the shown span beyond the worst shown loss
_PAD = 0.05  # room around the drawn points, as a fraction of the shown span


@dataclass(frozen=True)
class LossAxis:
    """How the loss axis is drawn.

    ``fence`` is the loss beyond which a loss is clipped (None: nothing is),
    ``edge`` the loss at which clipped ones are drawn, ``range`` the axis's
    range in losses (None: the plotting library's own), ``clipped`` how many
    plotted losses were clipped and ``worst`` the worst of them.
    """

    log: bool
    direction: str
    fence: float | None = None
    edge: float | None = None
    range: tuple[float, float] | None = None
    clipped: int = 0
    worst: float | None = None

    @property
    def type(self) -> str:
        """plotly's axis type, ``log`` or ``linear``."""
        return "log" if self.log else "linear"

    @property
    def worse_edge(self) -> str:
        """Which edge of the plot the clipped losses sit on."""
        return "top" if self.direction == "minimize" else "bottom"

    def is_clipped(self, loss: float | None) -> bool:
        """Whether ``loss`` lies beyond the fence (drawn on the edge rather than where it is)."""
        if self.fence is None or loss is None or not math.isfinite(loss):
            return False
        return loss > self.fence if self.direction == "minimize" else loss < self.fence

    def placed(self, losses: Iterable[float | None]) -> list[float | None]:
        """Where each loss is drawn: itself, or the edge when it is clipped (None stays None, NaN becomes None)."""
        out: list[float | None] = []
        for loss in losses:
            if loss is None or not math.isfinite(loss):
                out.append(None)
            else:
                out.append(self.edge if self.is_clipped(loss) else float(loss))
        return out

    def plotly_range(self) -> list[float] | None:
        """The range as plotly wants it: in decades on a log axis (``log10`` of each end)."""
        if self.range is None:
            return None
        low, high = self.range
        return [math.log10(low), math.log10(high)] if self.log else [low, high]

    def note(self, metric: str) -> str | None:
        """What the plot must say about the clipped losses (None when there are none)."""
        if not self.clipped or self.worst is None:
            return None
        minimize = self.direction == "minimize"
        trials = "1 trial" if self.clipped == 1 else f"{self.clipped} trials"
        return (
            f"{trials} off the scale ({metric} {'>' if minimize else '<'} {_short(self.fence)}, "
            f"worst {_short(self.worst)}): {'▲' if minimize else '▼'} on the {self.worse_edge} edge"
        )


def loss_axis(losses: Sequence[float] | np.ndarray, direction: str) -> LossAxis:
    """Decide the loss axis for ``losses`` (the plotted trials' losses; NaN and infinities are ignored).

    Args:
        losses: The losses on the plot.
        direction: ``minimize`` or ``maximize``: which way is worse, so which outliers are clipped.

    Returns:
        The axis: log or linear, and what, if anything, is clipped (see the module's docstring).
    """
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"`direction` must be 'minimize' or 'maximize' (got {direction!r})")
    values = np.asarray([v for v in np.asarray(losses, dtype=float) if math.isfinite(v)], dtype=float)
    if values.size == 0:
        return LossAxis(log=False, direction=direction)
    positive = bool((values > 0).all())
    fence = _fence(np.log10(values) if positive else values, direction)
    if fence is not None and positive:
        fence = 10.0**fence
    if fence is None:
        return LossAxis(log=_spans_decades(values), direction=direction)
    minimize = direction == "minimize"
    out = values > fence if minimize else values < fence
    if not out.any():
        return LossAxis(log=_spans_decades(values), direction=direction)
    kept, clipped = values[~out], values[out]
    log = _spans_decades(kept)
    low, high, edge = _range(kept, log, minimize)
    worst = float(clipped.max() if minimize else clipped.min())
    return LossAxis(log, direction, float(fence), edge, (low, high), int(out.sum()), worst)


def _fence(units: np.ndarray, direction: str) -> float | None:
    """Tukey's far-out fence on the worse side, in ``units``; None when there are too few or no spread."""
    if units.size < MIN_LOSSES_TO_CLIP:
        return None
    q1, q3 = (float(q) for q in np.percentile(units, [25, 75]))
    iqr = q3 - q1
    if iqr <= 0:  # most losses equal: no scale to call anything far from them
        return None
    return q3 + FENCE_IQRS * iqr if direction == "minimize" else q1 - FENCE_IQRS * iqr


def _spans_decades(values: np.ndarray) -> bool:
    return bool(values.size and (values > 0).all() and values.max() / values.min() > DECADE)


def _range(kept: np.ndarray, log: bool, minimize: bool) -> tuple[float, float, float]:
    """The axis range and the edge where clipped losses go, in losses: the kept losses, room for the edge."""
    units = np.log10(kept) if log else kept
    low, high = float(units.min()), float(units.max())
    span = high - low
    if span <= 0:  # one value (or all equal): a tenth of a decade, or a tenth of the value, either side
        span = 0.1 if log else (abs(high) * 0.1 or 1.0)
    if minimize:
        edge = high + _EDGE_GAP * span
        low, high = low - _PAD * span, edge + _PAD * span
    else:
        edge = low - _EDGE_GAP * span
        low, high = edge - _PAD * span, high + _PAD * span
    if log:
        return 10.0**low, 10.0**high, 10.0**edge
    return low, high, edge


def _short(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"
