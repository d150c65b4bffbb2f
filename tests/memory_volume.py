"""A volume held in a dict: the :class:`hpo.volume.Volume` contract without a disk or a network.

Controller tests (tests/controller_harness.py) run on it: a poll cycle then
costs no fsync, no rename and no directory walk, so a test of many cycles
still takes milliseconds. It passes the volume contract suite
(tests/test_volume_contract.py) like the folder and the S3 volume.

Semantics follow the object store more than the folder: keys are flat
strings, so ``a`` and ``a/b`` may both be objects (a folder volume cannot
hold both; nothing in the project relies on either). Every operation checks
its key like the others do (:func:`hpo.volume.check_key`); a missing object
raises :class:`~hpo.errors.VolumeNotFoundError`. One lock guards the dict, so
a reader never sees half a write or half an append, from any thread.
"""

from __future__ import annotations

import builtins
import itertools
import threading
import time
from collections.abc import Callable, Iterable

from hpo.errors import VolumeError, VolumeNotFoundError
from hpo.volume import ObjectInfo, Volume, check_key

_names = itertools.count()


class MemoryVolume(Volume):
    """Byte objects in memory, under ``memory://<name>`` (a unique name per instance unless given).

    ``clock`` stamps each object's mtime (the time of its last write or
    append); by default the wall clock. The volume cannot be reopened in
    another process: it lives in this one only, and has no :attr:`address`.
    """

    def __init__(self, name: str | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.url = f"memory://{name if name is not None else f'volume-{next(_names)}'}"
        self._clock = clock
        self._objects: dict[str, tuple[bytearray, float]] = {}
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        """Refused: no other process (an agent, ``hpo run``) can reopen a volume that lives in this one.

        A test that takes a folder from it (``Path(volume.address) / key``)
        would write into the working directory; it fails here instead, and
        should go through the volume's methods or ask for a folder volume.
        """
        raise VolumeError(f"{self.url} lives in this process only: it has no address to reopen it from")

    # -- reads ----------------------------------------------------------------

    def _data(self, key: str) -> bytearray:
        """The object's buffer (callers hold the lock); VolumeNotFoundError if missing."""
        found = self._objects.get(check_key(key))
        if found is None:
            raise VolumeNotFoundError(self.url, key)
        return found[0]

    def read_bytes(self, key: str) -> bytes:
        with self._lock:
            return bytes(self._data(key))

    def read_from(self, key: str, offset: int) -> bytes:
        if offset < 0:
            raise VolumeError(f"{self.url}: {key}: bad offset {offset}")
        with self._lock:
            return bytes(self._data(key)[offset:])

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise VolumeError(f"{self.url}: {key}: bad range {offset}+{length}")
        with self._lock:
            return bytes(self._data(key)[offset : offset + length])

    def size(self, key: str) -> int | None:
        with self._lock:
            found = self._objects.get(check_key(key))
            return None if found is None else len(found[0])

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        """Every size under one lock: one consistent look, as one listing would give."""
        wanted = [check_key(key) for key in keys]
        with self._lock:
            return {key: (len(self._objects[key][0]) if key in self._objects else None) for key in wanted}

    def list(self, prefix: str) -> list[ObjectInfo]:
        folder = check_key(prefix.rstrip("/")) + "/"
        with self._lock:
            found = [
                ObjectInfo(key, len(data), mtime) for key, (data, mtime) in self._objects.items() if key.startswith(folder)
            ]
        found.sort(key=lambda info: info.key)
        return found

    # -- writes ---------------------------------------------------------------

    def write_bytes(self, key: str, data: bytes) -> None:
        check_key(key)
        copy = bytearray(data)  # the caller may change its buffer afterwards; the object must not
        with self._lock:
            self._objects[key] = (copy, self._clock())

    def append_bytes(self, key: str, data: bytes) -> None:
        check_key(key)
        with self._lock:
            found = self._objects.get(key)
            buffer = found[0] if found is not None else bytearray()
            buffer += data
            self._objects[key] = (buffer, self._clock())

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self._objects.pop(key, None)

    # -- for tests --------------------------------------------------------------

    def keys(self) -> builtins.list[str]:
        """Every key on the volume, sorted (what a test inspects to see what was written)."""
        with self._lock:
            return sorted(self._objects)
