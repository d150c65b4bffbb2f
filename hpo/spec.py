"""What a trial runs: the spec the controller writes and the agent reads.

It is the only thing the two share besides the event file, so it is plain
JSON validated on both sides. The volume is writable by every pod, so the
reading side takes nothing on trust: integers are JSON integers (never
``true`` or ``"5"``) within bounds, names are short, the code snapshot is a
sha256 (it becomes a volume key), the direction is one of the two.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from hpo.errors import VolumeError
from hpo.volume import Volume

_MAX_INT = 2**53 - 1
_Name = Annotated[str, Strict(), Field(min_length=1, max_length=200)]
_Steps = Annotated[int, Strict(), Field(ge=1, le=_MAX_INT)]


class TrialSpec(BaseModel):
    """Everything an attempt needs to run trial ``trial`` of ``study``.

    ``search_space`` holds each parameter's declaration (as in studies.yaml),
    so ``trial.suggest_*`` can refuse names the study does not search.
    ``code`` is the sha256 of the objectives snapshot on the volume.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    study: _Name
    trial: Annotated[int, Strict(), Field(ge=0, le=_MAX_INT)]
    objective: _Name
    params: dict[str, Any]
    search_space: dict[str, dict[str, Any]]
    max_step: _Steps
    eval_interval: _Steps = 1
    step_unit: Annotated[str, Strict(), Field(max_length=64)] = "epoch"
    direction: Literal["minimize", "maximize"] = "minimize"
    code: Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")] | None = None

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
            raise VolumeError(f"{volume.url}: {key}: not a valid trial spec ({spec_problem(exc)})") from None


def spec_problem(exc: ValidationError) -> str:
    """The first problem pydantic found in a spec, as a short phrase naming the field."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    text = f"{where}: {first['msg']}" if where else first["msg"]
    return text if len(text) <= 200 else text[:197] + "..."
