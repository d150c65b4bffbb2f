"""The exception tree of runpod-hpo.

Every error a user can cause or meet derives from :class:`HpoError`; the CLI
turns each into one line on stderr and a non-zero exit code, never a traceback::

    HpoError
    ├── ConfigError          studies.yaml is malformed, or names an unknown study
    ├── VolumeError          the volume cannot be read or written
    │   └── VolumeNotFoundError   a key is missing on the volume
    ├── JournalError         the study's journal on the volume is inconsistent
    ├── LeaseError           another live controller holds the study
    ├── BackendError         a backend could not launch, list or stop trial workers
    └── ObjectiveError       an objective cannot be found or imported
"""

from __future__ import annotations


class HpoError(Exception):
    """Base of every error runpod-hpo raises on purpose."""

    exit_code: int = 1


class ConfigError(HpoError):
    """studies.yaml is malformed or names something unknown.

    The message always names the file, and the study and key where known.
    """

    exit_code = 2


class VolumeError(HpoError):
    """The volume could not be read or written."""


class VolumeNotFoundError(VolumeError):
    """A key does not exist on the volume."""

    def __init__(self, volume: str, key: str) -> None:
        super().__init__(f"{volume}: no such key {key!r}")
        self.volume = volume
        self.key = key


class JournalError(HpoError):
    """The study's journal on the volume is inconsistent."""


class LeaseError(HpoError):
    """Another live controller holds the study's lease."""

    exit_code = 3


class BackendError(HpoError):
    """A backend could not launch, list or stop trial workers."""


class ObjectiveError(HpoError):
    """An objective module cannot be found, imported or called."""
