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
    """What the sidecar records: which volume, how many logs, how many bytes, the last segment seen."""

    volume: str
    logs: int = 0
    bytes: int = 0
    last_segment: str | None = None
    last_segment_size: int | None = None


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
            raw = json.loads(self._meta_path.read_text())
            state = CacheState(**raw)
        except (OSError, ValueError, TypeError):
            return CacheState(self.volume_url)
        return state if state.volume == self.volume_url else CacheState(self.volume_url)

    def load(self, state: CacheState) -> list[dict[str, Any]]:
        """Return the cached logs that ``state`` vouches for, dropping any torn tail. Call under the lock."""
        if state.logs == 0:
            self.reset()
            return []
        try:
            with open(self.path, "rb") as f:
                data = f.read(state.bytes)
        except OSError:
            data = b""
        lines = data.splitlines()
        if len(data) != state.bytes or len(lines) != state.logs:
            self.reset()
            return []
        os.truncate(self.path, state.bytes)  # a writer killed after writing, before the sidecar
        return [json.loads(line) for line in lines]

    def reset(self) -> None:
        """Forget everything cached. Call under the lock."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self._write_state(CacheState(self.volume_url))

    def extend(self, state: CacheState, data: bytes, logs: int, segment: str, segment_size: int) -> CacheState:
        """Append ``logs`` logs (``data``, whole lines) read from ``segment``; return the new state."""
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        new = CacheState(self.volume_url, state.logs + logs, state.bytes + len(data), segment, segment_size)
        self._write_state(new)
        return new

    def _write_state(self, state: CacheState) -> None:
        tmp = self._meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.__dict__))
        os.replace(tmp, self._meta_path)
