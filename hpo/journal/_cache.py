"""The local cache of a study's journal: a plain Optuna journal file plus a sidecar.

The cache holds only logs that are already on the volume, so it never needs
to be reconciled with it: a process killed before its flush leaves nothing
behind that the volume lacks. It is in Optuna's ``JournalFileBackend`` format
(one JSON log per line), so ``optuna-dashboard <cache file>`` opens it.

Several processes on one machine (the controller, ``hpo status``, the
dashboard) share a cache; they extend it under an exclusive ``flock``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    """``$HPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/runpod-hpo``, else ``~/.cache/runpod-hpo``."""
    if os.environ.get("HPO_CACHE_DIR"):
        return Path(os.environ["HPO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runpod-hpo"


@dataclass
class CacheState:
    """What the sidecar records: which volume, how many logs and bytes, and what they came from.

    ``covered`` lists every journal object (name relative to the journal folder,
    and size) whose logs the cache holds, in order. Each open checks them
    against its listing, so a segment damaged, removed or voided by a newer
    writer's epoch on the volume is never trusted from the cache.
    """

    volume: str
    logs: int = 0
    bytes: int = 0
    covered: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_json(cls, raw: Any) -> CacheState:
        """Parse a sidecar; raise ValueError for anything malformed (including sidecars of older versions)."""
        if not isinstance(raw, dict) or set(raw) != {"volume", "logs", "bytes", "covered"}:
            raise ValueError("not a cache sidecar")
        covered = tuple((str(name), int(size)) for name, size in raw["covered"])
        state = cls(str(raw["volume"]), int(raw["logs"]), int(raw["bytes"]), covered)
        if state.logs and not state.covered:
            raise ValueError("logs from nowhere")
        return state

    def to_json(self) -> dict[str, Any]:
        covered = [list(entry) for entry in self.covered]
        return {"volume": self.volume, "logs": self.logs, "bytes": self.bytes, "covered": covered}

    def extends(self, other: CacheState) -> bool:
        """True if this state holds everything ``other`` holds, from the same objects, and maybe more."""
        return self.covered[: len(other.covered)] == other.covered and self.logs >= other.logs


class JournalCache:
    """A study's cached journal file for one volume."""

    def __init__(self, cache_dir: Path, volume_url: str, study: str) -> None:
        volume_dir = hashlib.sha256(volume_url.encode()).hexdigest()[:16]
        self.dir = cache_dir / volume_dir
        self.path = self.dir / f"{study}.journal"
        self._meta_path = self.dir / f"{study}.journal.meta.json"
        self._lock_path = self.dir / f"{study}.journal.lock"
        self.volume_url = volume_url

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cache's exclusive lock (released by the kernel if the process dies)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read_state(self) -> CacheState:
        """The sidecar's state; a fresh state if it is missing, unreadable or for another volume."""
        try:
            state = CacheState.from_json(json.loads(self._meta_path.read_text()))
        except (OSError, ValueError, TypeError):
            return CacheState(self.volume_url)
        return state if state.volume == self.volume_url else CacheState(self.volume_url)

    def load(self, state: CacheState) -> bytearray:
        """The cached bytes that ``state`` vouches for, whole lines, dropping any torn tail. Call under the lock.

        Only their length and line count are checked here: each log is parsed and
        checked when it is served (:meth:`VolumeJournalBackend.read_logs`), and a
        cached line that is no log then sends the reader back to the volume.
        """
        if state.logs == 0:
            self.reset()
            return bytearray()
        data = bytearray(state.bytes)
        try:
            with open(self.path, "rb") as f:
                got = f.readinto(data)
        except OSError:
            got = -1
        if got != state.bytes or data.count(b"\n") != state.logs or not data.endswith(b"\n"):
            self.reset()
            return bytearray()
        os.truncate(self.path, state.bytes)  # a writer killed after writing, before the sidecar
        return data

    def reset(self) -> None:
        """Forget everything cached. Call under the lock."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self._write_state(CacheState(self.volume_url))

    def extend(self, state: CacheState, data: bytes, logs: int, name: str, size: int) -> CacheState:
        """Append ``logs`` logs (``data``, whole lines) read from journal object ``name`` of ``size`` bytes.

        Returns the new state. ``state`` must be what the sidecar holds now. Call under the lock.
        """
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        new = CacheState(self.volume_url, state.logs + logs, state.bytes + len(data), (*state.covered, (name, size)))
        self._write_state(new)
        return new

    def read_tail(self, start: int, end: int) -> bytes:
        """The cache file's bytes ``start..end-1`` (another process's extension). Call under the lock."""
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    def _write_state(self, state: CacheState) -> None:
        tmp = self._meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_json()))
        os.replace(tmp, self._meta_path)
