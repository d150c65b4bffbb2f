"""The agent: what runs inside a pod (or a local process) for one attempt of one trial."""

from __future__ import annotations

from hpo.agent._checkpoint import decode_checkpoint, encode_checkpoint
from hpo.agent._infra import EXIT_INFRA, Interrupted
from hpo.agent._runner import EXIT_PREEMPTED, AttemptAddress, run_attempt
from hpo.agent._trial import AgentTrial

__all__ = [
    "EXIT_INFRA",
    "EXIT_PREEMPTED",
    "AgentTrial",
    "AttemptAddress",
    "Interrupted",
    "decode_checkpoint",
    "encode_checkpoint",
    "run_attempt",
]
