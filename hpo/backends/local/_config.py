"""The ``local`` backend's keys in studies.yaml: ``compute: {backend: local}`` and ``volume: {path: ...}``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ValidationInfo, field_validator

from hpo.config import Bool, ComputeConfig, VolumeConfig, folder_path
from hpo.volume import DirectoryVolume


class LocalCompute(ComputeConfig):
    """Trials run as processes on this machine.

    ``trust_volume_code`` lets them run the objectives snapshot of a RunPod
    volume reached over S3: code that anyone who can write the volume (every
    pod, every holder of its S3 key) can replace (see :mod:`hpo.code`).
    """

    backend: Literal["local"] = "local"
    trust_volume_code: Bool = False

    default_poll_interval: ClassVar[float] = 1.0  # a local process is cheap to watch


class LocalVolume(VolumeConfig):
    """A local folder standing in for the network volume.

    A relative ``path`` is relative to the directory holding studies.yaml (not
    the working directory), so ``hpo run`` finds the same folder from anywhere.
    """

    kind_key: ClassVar[str] = "path"
    kind_text: ClassVar[str] = "a local folder"
    example: ClassVar[str] = "{path: <folder>}"

    path: Path

    @field_validator("path", mode="plain")
    @classmethod
    def _resolve(cls, value: Any, info: ValidationInfo) -> Path:
        return folder_path(value, info)

    def open(self) -> DirectoryVolume:
        return DirectoryVolume(self.path)
