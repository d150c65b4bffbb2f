"""Pruning: when the controller asks the study's pruner, and what its verdict writes.

A poll's events of an attempt are one batch. Every report in it reaches the
study first; a final event the worker already wrote (``done``, ``pruned``,
``error``) is the trial's verdict whatever the pruner would say of the reports
before it. Only then, for a trial still running, is the pruner asked, once:

- not when the batch brought no new report (nothing changed);
- not while the trial is stopping for the budget (its worker is going anyway);
- not while its event file's tail is ``behind`` (the rest of the batch comes next
  poll, and may hold a verdict);
- not at or past the last step, when the study declares one (pruning a trial
  about to finish saves nothing and discards a result).

Optuna's percentile and median pruners read every completed trial at each
ask; :func:`install_fast_pruner` swaps them for :mod:`._fast_pruners`' copy,
which keeps the completed trials' values per step and decides the same, and
:func:`absorb_told` tells it of each trial the controller completes.

A prune is told to the study and flushed before it acts on the world: the
order written to the trial's ``control.json`` records how far the decision
had read the attempt's events, and the worker is terminated in the same poll.
"""

from __future__ import annotations

import optuna
from optuna.storages import BaseStorage

from hpo.controller._fast_pruners import FastPercentilePruner, fast_pruner
from hpo.controller._runs import TrialRun


def may_ask(run: TrialRun, new_reports: int, max_step: int | None) -> bool:
    """True if the pruner may be asked about ``run`` after a batch that brought ``new_reports`` reports.

    ``max_step`` None: the study declares no ``fidelity.max_step``, so no report is known to be the last.
    """
    return (
        new_reports > 0
        and not run.stopping
        and not run.tail.behind
        and run.last_step is not None
        and (max_step is None or run.last_step < max_step)
    )


def should_prune(study: optuna.Study, run: TrialRun) -> bool:
    """The study's pruner's answer for ``run`` at its last reported step."""
    return optuna.Trial(study, run.trial_id).should_prune()


def install_fast_pruner(study: optuna.Study) -> None:
    """Give ``study`` a pruner whose cost per ask does not grow with its history, deciding as its own does.

    A percentile or median pruner becomes a :class:`FastPercentilePruner` that
    has absorbed the study's COMPLETE trials; any other pruner stays. Call it
    once the study is open, before any trial is told or the pruner asked.
    """
    study.pruner = fast_pruner(study)


def absorb_told(study: optuna.Study, storage: BaseStorage, trial_id: int) -> None:
    """Tell ``study``'s pruner of a trial just told to the study, if it keeps the completed trials.

    Any trial may be passed: only a COMPLETE one counts, and only once.
    """
    pruner = study.pruner
    if isinstance(pruner, FastPercentilePruner):
        pruner.absorb(storage.get_trial(trial_id))


def prune_order(run: TrialRun, step: int) -> dict[str, object]:
    """The ``control.json`` order that prunes ``run`` at ``step``, with what the decision saw.

    ``events_read`` is the byte of the attempt's event file the decision had
    read up to (a worker writes on meanwhile): the agent and an audit can tell
    which reports the pruner judged.
    """
    return {"action": "prune", "step": step, "attempt": run.attempt, "events_read": run.tail.offset}
