"""One interface over the network volume (see :mod:`hpo.volume._base`)."""

from __future__ import annotations

from hpo.volume._base import ObjectInfo, Volume, check_key
from hpo.volume._directory import DirectoryVolume
from hpo.volume._open import open_volume

__all__ = ["DirectoryVolume", "ObjectInfo", "Volume", "check_key", "open_volume"]
