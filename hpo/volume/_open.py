"""Open a volume from the root string the agent and controller pass around."""

from __future__ import annotations

from hpo.errors import VolumeError
from hpo.volume._base import Volume
from hpo.volume._directory import DirectoryVolume


def open_volume(root: str) -> Volume:
    """Return the volume named by ``root``: a directory path or ``file://`` URL.

    The agent receives this string in ``HPO_VOLUME``; S3 volumes (``s3://``)
    plug in here when they exist.
    """
    if root.startswith("file://"):
        root = root[len("file://") :]
    if "://" in root:
        raise VolumeError(f"unsupported volume {root!r}: expected a directory path")
    return DirectoryVolume(root)
