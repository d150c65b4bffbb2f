"""What a trial runs: the spec the controller writes and the agent reads.

It is the only thing the two share besides the event file, so it is plain
JSON validated on both sides.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from hpo.errors import VolumeError
from hpo.volume import Volume


class TrialSpec(BaseModel):
    """Everything an attempt needs to run trial ``trial`` of ``study``.

    ``search_space`` holds each parameter's declaration (as in studies.yaml),
    so ``trial.suggest_*`` can refuse names the study does not search.
    ``code`` is the sha256 of the objectives snapshot on the volume.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    study: str
    trial: int
    objective: str
    params: dict[str, Any]
    search_space: dict[str, dict[str, Any]]
    max_step: int
    eval_interval: int = 1
    step_unit: str = "epoch"
    direction: str = "minimize"
    code: str | None = None

    def write(self, volume: Volume, key: str) -> None:
        """Write the spec atomically to ``key``."""
        volume.write_json(key, self.model_dump(mode="json"))

    @classmethod
    def read(cls, volume: Volume, key: str) -> TrialSpec:
        """Read and validate the spec at ``key``; a malformed one raises :class:`VolumeError`."""
        raw = volume.read_json(key)
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise VolumeError(f"{volume.url}: {key}: not a valid trial spec ({exc.errors()[0]['msg']})") from exc
