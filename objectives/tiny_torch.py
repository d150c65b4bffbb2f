"""A small PyTorch objective that trains on the CPU in seconds: the F5-TTS objective's loop in miniature.

An MLP with dropout on scikit-learn's digits (the demo's data and split, see
``digits_mlp.load_data``), trained with AdamW, a warm-up then linear-decay LR
schedule, an EMA of the weights and minibatches shuffled by a seeded
``torch.Generator``. A step is one optimizer update. It runs the same update
loop as ``objectives/f5_tts.py`` (``_torch_training.run_updates``: report the
validation loss every ``trial.eval_interval`` updates, checkpoint model,
optimizer, scheduler, EMA and RNG states when one is due, resume from
``trial.resume_step``), so the CPU tests of this objective check the GPU
objective's resume logic: a preempted attempt's successor continues with the
very same batches and losses as an uninterrupted run.

Like F5-TTS's, the model it would deploy is the EMA: the EMA starts with the
run and warms up as F5-TTS's restarted EMA does (``_ema``), the reported
value is the EMA's validation loss, and the EMA's weights at the best
evaluation are kept (``best-<step>.npz`` in the checkpoint folder, read back
with ``_best_weights.read_npz`` into the MLP :func:`build_model` makes).

Parameters (``studies.yaml``): ``lr`` and ``batch_size`` are required;
``warmup_updates``, ``weight_decay``, ``hidden`` and ``ema_decay`` keep their
defaults unless the study searches them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from objectives._best_weights import BestWeights
from objectives._ema import warmup_ema_avg_fn
from objectives._torch_training import (
    EpochOrder,
    TrainingParts,
    optional_param,
    run_updates,
    seed_all,
    warmup_linear_decay,
)
from objectives.digits_mlp import load_data

if TYPE_CHECKING:
    from torch import nn

SEED = 7  # with the trial number: initial weights and data order
MAX_GRAD_NORM = 5.0
DROPOUT = 0.1  # draws from torch's global RNG every update: a resume must restore it


def build_model(inputs: int, hidden: int) -> nn.Module:
    """The MLP, untrained: what a saved ``best-<step>.npz`` loads into."""
    from torch import nn

    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Dropout(DROPOUT), nn.Linear(hidden, 10))


def objective(trial: Any, *, clock: Callable[[], float] = time.monotonic) -> float:
    """Train for ``trial.max_step`` updates; report the EMA's validation loss every ``trial.eval_interval``; return the best.

    ``clock`` times the checkpoints (``fidelity.checkpoint_seconds``); tests pass a fake one.
    """
    import torch
    import torch.nn.functional as F
    from torch.optim.swa_utils import AveragedModel

    lr = trial.suggest_float("lr")
    batch_size = int(trial.suggest_categorical("batch_size"))
    warmup = int(optional_param(trial, "warmup_updates", 10))
    weight_decay = float(optional_param(trial, "weight_decay", 0.01))
    hidden = int(optional_param(trial, "hidden", 64))
    ema_decay = float(optional_param(trial, "ema_decay", 0.95))

    # One thread: bit-for-bit repeatable sums, and local trials share the cores anyway.
    torch.set_num_threads(1)
    seed_all(SEED + trial.number)
    x_train, y_train, x_val, y_val = (torch.from_numpy(a) for a in load_data())
    x_train, x_val = x_train.float(), x_val.float()

    model = build_model(x_train.shape[1], hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    total = trial.max_step
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: warmup_linear_decay(u, warmup, total))
    ema = AveragedModel(model, avg_fn=warmup_ema_avg_fn(ema_decay))
    order = EpochOrder(len(x_train), batch_size, seed=SEED + trial.number)

    def update(step: int) -> float:
        batch = torch.tensor(order.items(step))
        model.train()
        loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        ema.update_parameters(model)
        return loss.item()

    def evaluate() -> float:
        ema.module.eval()  # the EMA is what would be deployed
        with torch.no_grad():
            return F.cross_entropy(ema.module(x_val), y_val).item()

    parts = TrainingParts(model, optimizer, scheduler, ema)
    best = BestWeights(lambda: ema.module.state_dict())
    return run_updates(trial, parts, update=update, evaluate=evaluate, best=best, clock=clock)
