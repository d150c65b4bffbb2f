"""An Optuna journal backend whose log lives on the volume, in segments.

S3 cannot append, and RunPod's network volume must not see two writers on one
file, so the journal is cut into immutable segments: each flush writes the
logs appended since the last one as ``journal/<first log number>.jsonl``. A
segment's name says where it starts, so a reader knows the name of the next
one and can look for it with one GET instead of a listing.

Reads are served from memory, backed by the local :class:`JournalCache`; the
volume is listed once, when the backend opens. The controller (``writer``)
holds the study's lease and is the only process that writes segments; readers
(``hpo status``, the dashboard) look for new segments at most every
``refresh_interval`` seconds.

No pickle is involved anywhere: Optuna's snapshot interface
(``BaseJournalSnapshot``) is deliberately not implemented, because any pod
with the volume could write a snapshot that the controller would unpickle.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.storages.journal import BaseJournalBackend

from hpo.errors import JournalError, VolumeNotFoundError
from hpo.journal._cache import CacheState, JournalCache, default_cache_dir
from hpo.layout import StudyLayout
from hpo.volume import ObjectInfo, Volume

log = logging.getLogger(__name__)


def _encode(logs: list[dict[str, Any]]) -> bytes:
    # The same separators as Optuna's JournalFileBackend, so the cache is byte-compatible.
    return b"".join(json.dumps(entry, separators=(",", ":")).encode() + b"\n" for entry in logs)


class VolumeJournalBackend(BaseJournalBackend):
    """The study's Optuna journal, stored as segments on the volume.

    Args:
        volume: The volume holding ``hpo/<study>/journal/``.
        study: The study's name.
        writer: True for the one process (the lease holder) that appends; it
            must call :meth:`flush` to make its appends durable.
        cache_dir: Where the local cache lives (default :func:`default_cache_dir`).
        refresh_interval: How often a reader looks for new segments, in seconds.
        compact_every: The writer compacts the journal after this many segments.
        clock: A monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        volume: Volume,
        study: str,
        *,
        writer: bool = False,
        cache_dir: Path | None = None,
        refresh_interval: float = 2.0,
        compact_every: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._volume = volume
        self._layout = StudyLayout(study)
        self._cache = JournalCache(cache_dir or default_cache_dir(), volume.url, study)
        self._writer = writer
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._logs: list[dict[str, Any]] = []  # flushed logs, then pending ones
        self._state = CacheState(volume.url)  # describes the flushed prefix of self._logs
        self.segment_reads = 0
        self._compact_every = compact_every
        self._since_compaction = 0
        self._open()
        self._last_refresh = clock()

    @property
    def cache_path(self) -> Path:
        """The local cache file, an Optuna journal file any Optuna tool can open."""
        return self._cache.path

    @property
    def pending(self) -> int:
        """How many appended logs are not yet on the volume."""
        return len(self._logs) - self._state.logs

    # -- BaseJournalBackend -------------------------------------------------------------

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        if not self._writer and self._clock() - self._last_refresh >= self._refresh_interval:
            self.refresh()
        return self._logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if not self._writer:
            raise JournalError(f"study {self._layout.study!r}: the journal is open read-only")
        self._logs.extend(logs)

    # -- our own ------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the pending logs to the volume as one new segment.

        The controller calls this before every side effect outside the journal
        (launching, terminating, writing a spec), so nothing that happened in the
        world is missing from the journal after a crash.
        """
        if not self.pending:
            return
        first = self._state.logs
        key = self._layout.journal_segment(first)
        if self._volume.exists(key):
            raise JournalError(
                f"study {self._layout.study!r}: journal segment {key} already exists: "
                "another controller is writing this study"
            )
        data = _encode(self._logs[first:])
        self._volume.write_bytes(key, data)
        with self._cache.locked():
            shared = self._cache.read_state()
            if shared.last_segment == key and shared.logs == len(self._logs):
                self._state = shared  # a reader on this machine already cached our segment
            elif shared.logs == first:
                self._state = self._cache.extend(shared, data, len(self._logs) - first, key, len(data))
            else:
                self._cache.reset()  # the cache went its own way; rebuild it from the volume next time
                self._state = CacheState(self._volume.url, len(self._logs), 0, key, len(data))
        self._since_compaction += 1
        if self._since_compaction >= self._compact_every:
            self._compact()

    def refresh(self) -> None:
        """Pick up segments written since the last look (readers only)."""
        self._last_refresh = self._clock()
        with self._cache.locked():
            shared = self._cache.read_state()
            if shared.logs > self._state.logs and shared.bytes > self._state.bytes:
                with open(self._cache.path, "rb") as f:
                    f.seek(self._state.bytes)
                    data = f.read(shared.bytes - self._state.bytes)
                self._logs.extend(json.loads(line) for line in data.splitlines())
                self._state = shared
            self._state = self._catch_up(self._state, segments=None)

    def _open(self) -> None:
        listing = {info.key: info for info in self._volume.list(self._layout.journal_dir + "/")}
        segments: dict[int, ObjectInfo] = {}
        compactions: dict[int, ObjectInfo] = {}
        for key, info in listing.items():
            parsed = self._layout.parse_journal_key(key)
            if parsed is not None:
                (segments if parsed[0] == "segment" else compactions)[parsed[1]] = info
        last_compaction = max(compactions, default=0)
        self._since_compaction = sum(1 for first in segments if first >= last_compaction)
        with self._cache.locked():
            state = self._cache.read_state()
            if state.logs and not self._cache_matches_volume(state, listing):
                log.info("journal cache of study %r does not match the volume; rebuilding it", self._layout.study)
                self._cache.reset()
                state = CacheState(self._volume.url)
            self._logs = self._cache.load(state)
            if len(self._logs) != state.logs:
                state = CacheState(self._volume.url)
            if last_compaction > state.logs:
                state = self._read_compaction(state, compactions[last_compaction])
            self._state = self._catch_up(state, segments)

    @staticmethod
    def _cache_matches_volume(state: CacheState, listing: dict[str, ObjectInfo]) -> bool:
        seen = listing.get(state.last_segment or "")
        return seen is not None and seen.size == state.last_segment_size

    def _read_compaction(self, state: CacheState, info: ObjectInfo) -> CacheState:
        """Take the logs the cache lacks from one compacted object. Call under the cache lock."""
        data = self._read_segment(info.key)
        lines = data.splitlines(keepends=True)
        if self._logs and json.loads(lines[0]) != self._logs[0]:
            raise JournalError(f"{self._volume.url}: {info.key} does not begin like the cached journal")
        new = lines[state.logs :]
        self._logs.extend(json.loads(line) for line in new)
        return self._cache.extend(state, b"".join(new), len(new), info.key, info.size)

    def _catch_up(self, state: CacheState, segments: dict[int, ObjectInfo] | None) -> CacheState:
        """Append to the cache every segment from ``state.logs`` on. Call under the cache lock.

        With a listing (``segments``, by first log number) the segments to read
        are known; without one, the next name is probed with a GET until one is missing.
        """
        while True:
            key = self._layout.journal_segment(state.logs)
            if segments is not None and state.logs not in segments:
                self._check_no_gap(state.logs, segments)
                return state
            try:
                data = self._read_segment(key)
            except VolumeNotFoundError:
                return state
            lines = data.splitlines()
            self._logs.extend(json.loads(line) for line in lines)
            state = self._cache.extend(state, data, len(lines), key, len(data))

    def _read_segment(self, key: str) -> bytes:
        """One journal object, checked whole: a segment is written atomically, so it must parse."""
        data = self._volume.read_bytes(key)
        self.segment_reads += 1
        try:
            for line in data.splitlines():
                json.loads(line)
        except json.JSONDecodeError as exc:
            raise JournalError(f"{self._volume.url}: {key}: corrupt journal segment ({exc})") from exc
        if not data:
            raise JournalError(f"{self._volume.url}: {key}: empty journal segment")
        return data

    def _check_no_gap(self, next_log: int, segments: dict[int, ObjectInfo]) -> None:
        later = sorted(first for first in segments if first > next_log)
        if later:
            raise JournalError(
                f"{self._volume.url}: study {self._layout.study!r}: journal segment for log {next_log} "
                f"is missing but {segments[later[0]].key} exists"
            )

    def _compact(self) -> None:
        """Write every flushed log as one object, so the next open reads it instead of many segments.

        Segments are kept: a reader probing for the next segment by name never
        finds a hole, and the listing at open stays one or two pages long for
        any study that fits in memory.
        """
        count = self._state.logs
        self._volume.write_bytes(self._layout.journal_compaction(count), _encode(self._logs[:count]))
        self._since_compaction = 0
