"""The volume interface: one small set of file operations over the network volume.

A volume is a tree of byte objects addressed by POSIX-style keys relative to its
root (``hpo/demo/trials/3/spec.json``). Two implementations stand behind it: a
directory (``storage/`` locally, or the volume mounted at ``/workspace`` on a
pod) and, later, RunPod's S3-compatible API. Everything above this layer speaks
keys, never paths, so the controller and the agent run unchanged on both.

Every file on the volume has exactly one writer (RunPod warns that concurrent
writes to one file corrupt it), so the interface needs no locking: whole-object
writes are atomic replaces, and appends are only ever made by the file's owner.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.errors import VolumeError


@dataclass(frozen=True)
class ObjectInfo:
    """One object found by :meth:`Volume.list`."""

    key: str
    size: int
    mtime: float


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise :class:`VolumeError`.

    Keys never start with ``/``, never contain ``..`` or empty parts, so no
    key can escape the volume's root.
    """
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise VolumeError(f"invalid volume key {key!r}")
    return key


class Volume(ABC):
    """Byte objects under keys, with atomic writes and single-writer appends."""

    #: A stable identity for the volume (``file:///abs/path`` or ``s3://<volume id>``);
    #: it names the local journal cache and appears in messages.
    url: str

    #: How many reads a caller may keep in flight at once to good effect. 1 (read one after
    #: another, in the caller's thread) where a read costs microseconds (a local disk); more
    #: where each costs a network round trip (S3), so a poll of many files pays about one.
    read_concurrency: int = 1

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Return the whole object; raise :class:`VolumeNotFoundError` if it is missing."""

    @abstractmethod
    def read_from(self, key: str, offset: int) -> bytes:
        """Return the object's bytes from ``offset`` to its end (``b""`` past the end).

        This is how pollers read only what is new in a growing file.
        Raises :class:`VolumeNotFoundError` if the object is missing.
        """

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Return at most ``length`` bytes of the object from ``offset`` (``b""`` past the end).

        Readers of files other processes write (event files) use it to bound
        what one read holds in memory. This default cuts :meth:`read_from`;
        implementations override it with a bounded read.
        Raises :class:`VolumeNotFoundError` if the object is missing.
        """
        return self.read_from(key, offset)[:length]

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Create or replace the object atomically: readers see the old or the new bytes, whole."""

    @abstractmethod
    def append_bytes(self, key: str, data: bytes) -> None:
        """Append to the object, creating it if missing. Only the object's one writer may call this."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """Return the object's size in bytes, or None if it does not exist."""

    @abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Return every object under ``prefix`` (a folder key, recursive), sorted by key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""

    @property
    def address(self) -> str:
        """The string :func:`hpo.volume.open_volume` reopens this volume from in another process.

        It is what a trial process receives in ``HPO_VOLUME``, so it never holds a secret.
        """
        return self.url

    def local_path(self, key: str) -> Path | None:
        """Return a filesystem path for ``key`` where the volume is a mounted directory, else None."""
        return None

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        """Return the size of each key (None where missing).

        Pollers call this once per cycle for every live event file; an
        implementation may answer it with a few listings instead of one call
        per key, as long as what it lists does not grow with the files around
        the keys (a study's finished trials).
        """
        return {key: self.size(key) for key in keys}

    def exists(self, key: str) -> bool:
        """Return True if the object exists."""
        return self.size(key) is not None

    def read_json(self, key: str) -> Any:
        """Read and parse a JSON object; a malformed one raises :class:`VolumeError` naming the key.

        Malformed includes what ``json`` refuses beyond syntax: an integer of
        thousands of digits (``ValueError``) and nesting deeper than Python's
        recursion limit (``RecursionError``), both of which anyone who can
        write the volume can put there.
        """
        data = self.read_bytes(key)
        try:
            return json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            reason = " ".join(str(exc).split())[:160] if not isinstance(exc, RecursionError) else "nested too deeply"
            raise VolumeError(f"{self.url}: {key}: not valid JSON ({reason})") from None

    def write_json(self, key: str, value: Any) -> None:
        """Write ``value`` as an indented JSON object, atomically."""
        self.write_bytes(key, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
