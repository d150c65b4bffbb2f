"""One interface over the network volume (see :mod:`hpo.volume._base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.volume._base import ObjectInfo, Volume, check_key
from hpo.volume._directory import DirectoryVolume
from hpo.volume._open import open_volume

if TYPE_CHECKING:
    from hpo.volume._s3 import S3Volume

__all__ = ["DirectoryVolume", "ObjectInfo", "S3Volume", "Volume", "check_key", "open_volume"]


def __getattr__(name: str) -> Any:
    # S3Volume loads on first use: boto3 costs every directory-only process
    # (the agent on a pod, local trials) a noticeable import for nothing.
    if name == "S3Volume":
        from hpo.volume._s3 import S3Volume

        return S3Volume
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
