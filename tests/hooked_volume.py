"""A volume wrapper that pauses its user at one step, so a contender can run in between, deterministically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hpo.volume import ObjectInfo, Volume


class HookedVolume(Volume):
    """Delegates to ``inner``; a hook set with :meth:`pause_after` runs once, right after the chosen call
    has done its work and before it returns to its caller: the caller is paused at that step while the
    hook plays the contender.
    """

    def __init__(self, inner: Volume) -> None:
        self.inner = inner
        self.url = inner.url
        self._hooks: dict[tuple[str, str], list[Callable[[], None]]] = {}

    def pause_after(self, method: str, key: str, hook: Callable[[], None]) -> None:
        """Run ``hook`` once, after the next ``method(key, ...)`` call (``list`` takes the prefix as its key)."""
        self._hooks.setdefault((method, key), []).append(hook)

    def pending_hooks(self) -> int:
        return sum(len(hooks) for hooks in self._hooks.values())

    def _after(self, method: str, key: str) -> None:
        hooks = self._hooks.get((method, key))
        if hooks:
            hooks.pop(0)()

    @property
    def address(self) -> str:
        return self.inner.address

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)

    def read_bytes(self, key: str) -> bytes:
        data = self.inner.read_bytes(key)
        self._after("read_bytes", key)
        return data

    def read_from(self, key: str, offset: int) -> bytes:
        data = self.inner.read_from(key, offset)
        self._after("read_from", key)
        return data

    def write_bytes(self, key: str, data: bytes) -> None:
        self.inner.write_bytes(key, data)
        self._after("write_bytes", key)

    def append_bytes(self, key: str, data: bytes) -> None:
        self.inner.append_bytes(key, data)
        self._after("append_bytes", key)

    def size(self, key: str) -> int | None:
        found = self.inner.size(key)
        self._after("size", key)
        return found

    def list(self, prefix: str) -> list[ObjectInfo]:
        found = self.inner.list(prefix)
        self._after("list", prefix)
        return found

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        self._after("delete", key)
