"""Optuna's percentile (and median) pruner, at a cost per ask independent of the study's history.

Optuna's ``PercentilePruner.prune`` reads every COMPLETE trial each time it is
asked: the controller asks once per running trial per poll, so a poll over a
history of 10,000 finished trials cost ten times one over none. A completed
trial never changes, so :class:`FastPercentilePruner` keeps, per step, the
sorted values that COMPLETE trials reported there, and is told of each
completed trial once (:meth:`FastPercentilePruner.absorb`). An ask then costs
the asked trial's own steps and a bisection, whatever the history.

Its verdicts are Optuna's, to the bit: the same checks in the same order
(startup trials, warmup, interval, a NaN best value), Optuna's own helpers for
the trial's side, and ``np.nanpercentile``'s linear interpolation replayed on
the two neighbouring values (``tests/test_fast_pruners.py`` compares them on
random studies). Its limit: it knows only the trials it was told of. The
controller tells it the history when it opens the study and each trial it
completes; nothing else completes trials while it holds the study's lease.
"""

from __future__ import annotations

import bisect
import math

import optuna
from optuna.pruners import BasePruner, MedianPruner, PercentilePruner

try:  # Optuna's own helpers for the asked trial's side: private, so an Optuna without them gets its own pruner
    from optuna.pruners._percentile import _get_best_intermediate_result_over_steps, _is_first_in_interval_step
except ImportError:  # pragma: no cover - depends on the installed Optuna
    _HELPERS = False
else:
    _HELPERS = True
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


class StepValues:
    """The values that COMPLETE trials reported at one step: NaNs counted, the others kept sorted."""

    __slots__ = ("count", "sorted")

    def __init__(self) -> None:
        self.count = 0  # every value, NaN included (Optuna's ``n_min_trials`` counts them)
        self.sorted: list[float] = []  # the non-NaN values (infinities included), ascending

    def add(self, value: float) -> None:
        """Count ``value``; keep it unless it is NaN (``np.nanpercentile`` drops NaNs)."""
        self.count += 1
        if not math.isnan(value):
            bisect.insort(self.sorted, value)

    def percentile(self, percentile: float) -> float:
        """``float(np.nanpercentile(values, percentile))``, in time independent of the count.

        Replays numpy's linear method (``numpy.lib._function_base_impl._quantile``)
        on the two neighbours of the virtual index, with the same float
        operations in the same order, so infinities give numpy's answers too
        (``[inf]`` gives NaN, as numpy's lerp of ``inf`` with itself does).
        """
        values = self.sorted
        n = len(values)
        if n == 0:
            return math.nan  # numpy: an all-NaN slice gives NaN
        q = percentile / 100  # np.true_divide(q, 100)
        virtual = (n - 1) * q
        if virtual >= n - 1:  # above bounds: numpy takes index -1 for both neighbours
            previous_index = -1
            a = b = values[-1]
        else:  # virtual >= 0: q is in [0, 1]
            previous_index = math.floor(virtual)
            a, b = values[previous_index], values[previous_index + 1]
        gamma = virtual - previous_index
        diff = b - a
        if gamma >= 0.5:
            return b - diff * (1 - gamma)
        return a + diff * gamma


class FastPercentilePruner(BasePruner):
    """Optuna's ``PercentilePruner`` with the completed trials kept per step; same verdicts.

    Args:
        percentile: As Optuna's (50 for the median pruner).
        n_startup_trials: As Optuna's.
        n_warmup_steps: As Optuna's.
        interval_steps: As Optuna's.
        n_min_trials: As Optuna's.

    Optuna validates the arguments: build it with :meth:`replacing`, from a pruner Optuna built.
    """

    def __init__(
        self,
        percentile: float,
        n_startup_trials: int,
        n_warmup_steps: int,
        interval_steps: int,
        n_min_trials: int,
    ) -> None:
        self._percentile = percentile
        self._n_startup_trials = n_startup_trials
        self._n_warmup_steps = n_warmup_steps
        self._interval_steps = interval_steps
        self._n_min_trials = n_min_trials
        self._absorbed: set[int] = set()  # trial ids of the COMPLETE trials counted
        self._steps: dict[int, StepValues] = {}

    @classmethod
    def replacing(cls, pruner: PercentilePruner) -> FastPercentilePruner:
        """A pruner that decides as ``pruner`` does (a ``PercentilePruner`` or ``MedianPruner``), nothing absorbed yet."""
        return cls(
            pruner._percentile,
            pruner._n_startup_trials,
            pruner._n_warmup_steps,
            pruner._interval_steps,
            pruner._n_min_trials,
        )

    @property
    def n_complete(self) -> int:
        """How many COMPLETE trials it has absorbed."""
        return len(self._absorbed)

    def absorb(self, trial: FrozenTrial) -> None:
        """Count ``trial`` if it is COMPLETE and not counted yet; otherwise do nothing.

        Telling it the same trial twice, or a trial that is not COMPLETE, is harmless.
        """
        if trial.state != TrialState.COMPLETE or trial._trial_id in self._absorbed:
            return
        self._absorbed.add(trial._trial_id)
        for step, value in trial.intermediate_values.items():
            values = self._steps.get(step)
            if values is None:
                values = self._steps[step] = StepValues()
            values.add(float(value))

    def absorb_all(self, study: optuna.Study) -> None:
        """Absorb every COMPLETE trial of ``study`` (once, when the study is opened: it reads the history)."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            self.absorb(trial)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Optuna's ``PercentilePruner.prune``, over the absorbed trials instead of a read of the study."""
        n_trials = len(self._absorbed)
        if n_trials == 0 or n_trials < self._n_startup_trials:
            return False
        step = trial.last_step
        if step is None or step < self._n_warmup_steps:
            return False
        if not _is_first_in_interval_step(
            step, trial.intermediate_values.keys(), self._n_warmup_steps, self._interval_steps
        ):
            return False
        direction = study.direction
        best = _get_best_intermediate_result_over_steps(trial, direction)
        if math.isnan(best):
            return True
        values = self._steps.get(step)
        if values is None or values.count < self._n_min_trials:
            return False
        percentile = 100 - self._percentile if direction == StudyDirection.MAXIMIZE else self._percentile
        p = values.percentile(percentile)
        if math.isnan(p):
            return False
        if direction == StudyDirection.MAXIMIZE:
            return bool(best < p)
        return bool(best > p)


def fast_pruner(study: optuna.Study) -> BasePruner:
    """The pruner the controller should ask for ``study``: a :class:`FastPercentilePruner` with the history absorbed
    in place of Optuna's percentile or median pruner, the study's own pruner otherwise (unchanged).

    Only those exact classes are replaced: a subclass may decide differently.
    """
    pruner = study.pruner
    if not _HELPERS or type(pruner) not in (PercentilePruner, MedianPruner):
        return pruner
    assert isinstance(pruner, PercentilePruner)
    try:
        fast = FastPercentilePruner.replacing(pruner)
    except AttributeError:  # an Optuna whose pruner keeps its settings elsewhere: ask it as it is
        return pruner
    fast.absorb_all(study)
    return fast
