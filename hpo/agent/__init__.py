"""The agent: what runs inside a pod (or a local process) for one attempt of one trial."""

from __future__ import annotations

from hpo.agent._checkpoint import decode_checkpoint, encode_checkpoint
from hpo.agent._runner import AttemptAddress, run_attempt
from hpo.agent._trial import AgentTrial

__all__ = ["AgentTrial", "AttemptAddress", "decode_checkpoint", "encode_checkpoint", "run_attempt"]
