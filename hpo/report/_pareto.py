"""The Pareto front of cost against loss: the trials no other trial beats on both.

The study optimizes loss alone (Optuna's pruners refuse multi-objective
studies), so the front is computed here, after the fact, from each trial's
cost and loss. Both are minimized; a maximized metric is negated by the
caller. A trial dominates another when it is no worse on both and strictly
better on one, so two trials with the very same cost and loss are both on the
front: neither beats the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pareto_front(cost: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray) -> np.ndarray:
    """A boolean mask: True for each point no other point dominates (lower is better on both axes).

    Points with a NaN or infinite coordinate take no part (False), and
    dominate nothing. O(n log n): sweep by cost, keeping the best loss of all
    strictly cheaper points.
    """
    cost = np.asarray(cost, dtype=float)
    loss = np.asarray(loss, dtype=float)
    if cost.shape != loss.shape:
        raise ValueError(f"cost and loss differ in length ({cost.shape} vs {loss.shape})")
    mask = np.zeros(cost.shape, dtype=bool)
    valid = np.flatnonzero(np.isfinite(cost) & np.isfinite(loss))
    order = valid[np.lexsort((loss[valid], cost[valid]))]  # by cost, then loss
    best_cheaper = np.inf  # the lowest loss among points strictly cheaper than the current group
    i = 0
    while i < len(order):
        # One group of equal cost: only its lowest loss can be on the front, and only if no cheaper
        # point reaches that loss (a cheaper point with an equal loss dominates it).
        j = i
        while j < len(order) and cost[order[j]] == cost[order[i]]:
            j += 1
        group = order[i:j]
        lowest = loss[group].min()
        if lowest < best_cheaper:
            mask[group[loss[group] == lowest]] = True
            best_cheaper = lowest
        i = j
    return mask


def dominated_by(cost: Sequence[float], loss: Sequence[float], index: int) -> list[int]:
    """The points that dominate point ``index`` (for explanations and tests; O(n))."""
    c = np.asarray(cost, dtype=float)
    l_ = np.asarray(loss, dtype=float)
    no_worse = (c <= c[index]) & (l_ <= l_[index])
    better = (c < c[index]) | (l_ < l_[index])
    return [int(k) for k in np.flatnonzero(no_worse & better & np.isfinite(c) & np.isfinite(l_))]
