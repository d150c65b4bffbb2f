"""runpod-hpo: hyperparameter optimization for GPU training on RunPod.

An Optuna study whose storage lives on a (RunPod network) volume; each trial
runs as a worker (a spot pod, or a local process) that appends its validation
loss to an event file; the controller reports it to the study and prunes bad
trials by stopping their workers at once.

``hpo.Trial`` is the trial an objective receives (an :class:`optuna.trial.BaseTrial`);
it is imported on first use, so ``import hpo`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpo.agent._trial import AgentTrial as Trial

__version__ = "0.1.0"
__all__ = ["Trial", "__version__"]


def __getattr__(name: str) -> Any:
    """``hpo.Trial``, imported when first named (it brings Optuna)."""
    if name == "Trial":
        from hpo.agent._trial import AgentTrial

        return AgentTrial
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "Trial"])
