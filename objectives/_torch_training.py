"""The update loop PyTorch objectives share: report, checkpoint, prune and resume in one place.

``objectives/tiny_torch.py`` (CPU, seconds) and ``objectives/f5_tts.py`` (a
GPU, hours) run the same loop, so the CPU test of the first one checks the
resume logic of the second. A step is one optimizer update. Every
``trial.eval_interval`` updates (and after the last) the loop evaluates what
will be deployed (the EMA, for both) once per seed of :data:`EVAL_SEEDS` and
reports the mean, keeps the weights of the best evaluation
(``_best_weights``), checkpoints if one is due (``_checkpoint_timer``: by
time when the study sets ``fidelity.checkpoint_seconds``, else at every
evaluation; always after the last update; see ``_torch_checkpoint``), and
asks whether to prune. A resumed attempt restores the checkpoint and goes on
from ``trial.resume_step + 1``; since the data order is a function of the
update number (:class:`EpochOrder`) and every RNG state is restored, it
computes exactly the updates an uninterrupted run would have. Evaluations it
repeats (those after the last checkpoint) reach the study once: the
controller keeps a step's first report.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from objectives._best_weights import BestWeights
from objectives._checkpoint_timer import CheckpointTimer
from objectives._torch_checkpoint import StatefulLike, load_training_state, save_training_state

if TYPE_CHECKING:
    import torch

EVAL_SEEDS = (20240601, 20240602, 20240603, 20240604)
"""Seeds of every evaluation, whose values are averaged: each evaluation of each trial draws the same noise,
so values compare; several draws, because one draw (F5-TTS samples one flow time per utterance) is noisy."""

DIVERGED_LOSS = 1.0e3
"""Reported instead of a NaN or infinite loss: a diverged run gets a bad, finite value."""


def optional_param(trial: Any, name: str, default: Any) -> Any:
    """The sampled value of ``name`` if the study searches it, else ``default``.

    Lets one objective serve studies that search different subsets of its
    knobs: a parameter absent from studies.yaml keeps its default. The value
    is read from ``trial.params``, so the study may declare it with any type
    (``max_grad_norm`` as a float range or as a few categorical choices).
    """
    return trial.params.get(name, default)


def warmup_linear_decay(update: int, warmup: int, total: int, floor: float = 1e-8) -> float:
    """LR factor after ``update`` updates: linear warm-up from ``floor`` to 1, then linear decay to ``floor`` at ``total``.

    The closed form of F5-TTS's ``SequentialLR(LinearLR(1e-8 -> 1), LinearLR(1 -> 1e-8))``,
    with the decay ending at the study's ``fidelity.max_step`` instead of F5's epoch count.
    """
    if warmup > 0 and update < warmup:
        return floor + (1.0 - floor) * update / warmup
    decay = max(total - warmup, 1)
    return max(floor, 1.0 - (1.0 - floor) * (update - warmup) / decay)


class EpochOrder:
    """Which items feed update ``u``: epochs of fresh permutations drawn from a seeded ``torch.Generator``.

    Each epoch's permutation comes from a generator seeded with the seed and
    the epoch alone, so the items of any update are known without replaying
    the ones before it: a resumed run needs nothing but the update number.

    Args:
        n_items: Items per epoch (samples, or prebuilt batches).
        per_update: Items per update; the last ``n_items % per_update`` of each epoch are skipped.
        seed: The order's seed (per trial, so trials see different orders).
    """

    def __init__(self, n_items: int, per_update: int, seed: int) -> None:
        if n_items < per_update or per_update < 1:
            raise ValueError(f"EpochOrder: {n_items} items cannot fill updates of {per_update}")
        self.n_items = n_items
        self.per_update = per_update
        self.seed = seed
        self._cached: tuple[int, list[int]] | None = None

    @property
    def updates_per_epoch(self) -> int:
        return self.n_items // self.per_update

    def permutation(self, epoch: int) -> list[int]:
        """The order of the items in ``epoch`` (0-based)."""
        if self._cached is None or self._cached[0] != epoch:
            import torch

            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            self._cached = (epoch, torch.randperm(self.n_items, generator=generator).tolist())
        return self._cached[1]

    def items(self, update: int) -> list[int]:
        """The items of update ``update`` (1-based, as steps are)."""
        epoch, offset = divmod(update - 1, self.updates_per_epoch)
        start = offset * self.per_update
        return self.permutation(epoch)[start : start + self.per_update]

    def updates(self, first: int, last: int) -> Iterator[list[int]]:
        """The items of updates ``first`` .. ``last``, in order."""
        for update in range(first, last + 1):
            yield self.items(update)


def seed_all(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    A fresh run seeds all of them, so it is repeatable (F5-TTS draws its CFG
    drop-outs from Python's ``random``, its noise from torch); a resumed run
    then restores their states from the checkpoint.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def fixed_seed(seed: int) -> Iterator[None]:
    """Run the block with every global RNG seeded by ``seed``, then put the training RNG states back.

    An evaluation then draws the same noise every time, and the training run
    draws the same numbers whether or not it evaluated in between.
    """
    import torch

    python_state = random.getstate()
    numpy_state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        seed_all(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@dataclass
class TrainingParts:
    """What a checkpoint saves and restores; see ``_torch_checkpoint.save_training_state``."""

    model: StatefulLike
    optimizer: StatefulLike
    scheduler: StatefulLike | None = None
    ema: StatefulLike | None = None
    generators: Mapping[str, torch.Generator] = field(default_factory=dict)

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "ema": self.ema,
            "generators": self.generators,
        }


def mean_evaluation(evaluate: Callable[[], float], seeds: Sequence[int]) -> float:
    """The mean of ``evaluate()`` run once under :func:`fixed_seed` of each seed (exactly summed)."""
    values = []
    for seed in seeds:
        with fixed_seed(seed):
            values.append(float(evaluate()))
    return math.fsum(values) / len(values)


def run_updates(
    trial: Any,
    parts: TrainingParts,
    *,
    update: Callable[[int], float],
    evaluate: Callable[[], float],
    start_fresh: Callable[[], None] | None = None,
    best: BestWeights | None = None,
    eval_seeds: Sequence[int] = EVAL_SEEDS,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = print,
) -> float:
    """Train to ``trial.max_step`` updates, reporting ``evaluate()`` every ``trial.eval_interval``; return the best value.

    Args:
        trial: The agent's trial. Its ``checkpoint_seconds`` (the study's
            ``fidelity.checkpoint_seconds``) spaces checkpoints by time; a trial
            without it (an older agent) checkpoints at every evaluation.
        parts: Model, optimizer, scheduler, EMA and generators, built the same way in every attempt.
        update: Performs update number ``u`` (1-based) and returns its training loss.
        evaluate: The validation loss (lower is better) of what will be deployed;
            run once per seed of ``eval_seeds`` under :func:`fixed_seed`, and averaged.
        start_fresh: Called once when there is no checkpoint (to load pretrained weights, say);
            nothing is called on resume, where the checkpoint holds everything.
        best: Keeps the best evaluation's weights and writes them at checkpoints;
            None keeps only its value.
        eval_seeds: The evaluation's seeds.
        clock: Monotonic seconds, for the checkpoint timing; tests pass a fake one.
        log: Where a line per evaluation goes (the attempt's log on a pod).

    Raises:
        optuna.TrialPruned: The controller decided to prune the trial.
    """
    keeper = best if best is not None else BestWeights()
    timer = CheckpointTimer(getattr(trial, "checkpoint_seconds", None), clock)
    extra = load_training_state(trial, **parts.as_kwargs())
    if extra is None:
        if start_fresh is not None:
            start_fresh()
        first = 1
    else:
        keeper.restore(extra)
        first = trial.resume_step + 1
        log(f"resumed at update {trial.resume_step} (best so far {keeper.value:.6g})")

    def checkpoint(step: int, value: float) -> None:
        folder = trial.checkpoint_dir
        record = keeper.save(folder)  # the best weights first: the record below names them
        save_training_state(trial, step, **parts.as_kwargs(), extra={**record, "last": value})
        keeper.forget_older(folder)
        timer.saved()

    train_loss = math.nan
    for step in range(first, trial.max_step + 1):
        train_loss = update(step)
        if step % trial.eval_interval and step != trial.max_step:
            continue
        value = mean_evaluation(evaluate, eval_seeds)
        if not math.isfinite(value):
            value = DIVERGED_LOSS
        improved = keeper.offer(value, step)
        trial.report(value, step)
        saved = step == trial.max_step or timer.due()
        if saved:
            checkpoint(step, value)
        notes = "".join((" (best)" if improved else "", ", checkpointed" if saved else ""))
        log(f"update {step}: train_loss={train_loss:.6g} val_loss={value:.6g}{notes}")
        if trial.should_prune():
            raise optuna.TrialPruned()
    if keeper.step is not None:
        trial.set_user_attr("best_step", keeper.step)
    if keeper.file is not None:
        trial.set_user_attr("best_weights", keeper.file)
    return keeper.value
