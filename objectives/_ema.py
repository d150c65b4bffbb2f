"""An EMA of the weights that starts with the fine-tuning run, so the EMA a trial evaluates is its own.

F5-TTS deploys EMA weights: its inference loads a checkpoint with
``use_ema=True`` by default, and its published ``model_1250000.safetensors``
is an EMA state dict. So a fine-tuning trial must evaluate (and keep) the EMA.
But that EMA has counted 1.25M updates: continued as is, ema_pytorch decays it
at ``beta = 0.9999`` every 10 updates, and after 10,000 updates of
fine-tuning it is still 0.9999^1000 = ~90% the pretrained model, whatever the
learning rate: the metric would barely see the trial. :func:`restart_ema`
makes it start over, so ema_pytorch's warm-up applies again: the EMA follows
the online weights for the first 100 updates, then averages over a horizon
that grows with the run (decay ``1 - (1 + n)^(-2/3)`` per averaging step,
capped at ``beta``: 0.98 at update 500, 0.998 at update 10,000, i.e. roughly
the last few thousand updates).

:func:`ema_warmup_decay` is that schedule, and :func:`warmup_ema_avg_fn`
gives it to ``torch.optim.swa_utils.AveragedModel`` (``objectives/tiny_torch.py``
uses it, so the CPU tests exercise an EMA that warms up the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: importing this module stays cheap
    import torch

POWER = 2 / 3
"""ema_pytorch's default warm-up exponent, which F5-TTS's Trainer keeps."""


def ema_warmup_decay(averaged: int, beta: float, power: float = POWER) -> float:
    """The decay of the EMA's next averaging step after ``averaged`` steps: ``1 - (1 + n)^-power``, capped at ``beta``.

    ema_pytorch's ``get_current_decay`` with ``inv_gamma = 1``, counted in
    averaging steps (0 or fewer: 0, i.e. copy the online weights).
    """
    if averaged <= 0:
        return 0.0
    return min(beta, max(0.0, 1.0 - (1.0 + averaged) ** -power))


def warmup_ema_avg_fn(
    beta: float, power: float = POWER
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | int], torch.Tensor]:
    """An ``avg_fn`` for ``AveragedModel`` that averages with :func:`ema_warmup_decay`.

    ``AveragedModel`` copies the online weights at its first update and passes
    the number of updates averaged so far (a buffer in its state dict, so a
    resumed run continues the same schedule).
    """

    def average(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor | int) -> torch.Tensor:
        decay = ema_warmup_decay(int(num_averaged), beta, power)
        return averaged * decay + current * (1.0 - decay)

    return average


def restart_ema(ema: Any) -> None:
    """Make an ``ema_pytorch.EMA`` start over from the online model, as if the run began now.

    Its ``step`` counter goes back to 0 (so the warm-up decay applies again)
    and ``initted`` to False (so its next ``update()`` copies the online
    weights, which are the pretrained ones at the start of fine-tuning).
    """
    ema.step.zero_()
    ema.initted.fill_(False)
