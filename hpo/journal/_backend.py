"""An Optuna journal backend whose log lives on the volume, in segments, fenced by epochs.

S3 cannot append, and RunPod's network volume must not see two writers on one
file, so the journal is cut into immutable segments: each flush writes the
logs appended since the last one as ``journal/<first log>-e<epoch>-<token>.jsonl``.
A segment's name says where it starts and who wrote it, so a reader knows the
name of the next one and looks for it with one GET instead of a listing.

Reads are served from memory, backed by the local :class:`JournalCache`; the
whole journal folder is listed once, when the backend opens. The controller
(``writer``) holds the study's lease and is the only process that should write
segments; readers (``hpo status``, the dashboard) look for new segments at
most every ``refresh_interval`` seconds.

No pickle is involved anywhere: Optuna's snapshot interface
(``BaseJournalSnapshot``) is deliberately not implemented, because any pod
with the volume could write a snapshot that the controller would unpickle.

Memory: one copy, as bytes
--------------------------

Optuna's ``JournalStorage`` replays every log into its own state, so this
backend keeps the flushed logs only as the bytes of the cache file (one JSON
log a line, about a tenth of their size parsed) and parses each one as it hands
it to Optuna (:meth:`VolumeJournalBackend.read_logs` yields them, as Optuna's
``JournalFileBackend`` does). Only the writer's pending logs are held parsed.
Every log is checked (:mod:`hpo.journal._validate`) as it is parsed: a line
from a volume object that is no log is a :class:`JournalError` naming the
object and line; one from the local cache means the cache is damaged, and the
backend reads the journal again from the volume, carrying on where it was.

Compaction: ranges in tiers
---------------------------

Segments are kept forever (a reader probing for the next one by name never
finds a hole), and a long study would take thousands of GETs to open, so the
writer also writes ranges, ``range-<first>-<end>-e<epoch>-<token>.jsonl``:
logs ``first..end-1`` in one object. With the fan-out ``K`` (``compact_every``):
every ``K`` segments are merged into one range, every ``K`` ranges of ``K``
segments into one range of ``K**2``, and so on: each log is rewritten once per
tier, ``log_K`` of the segment count times, and the journal is a chain of at
most ``K - 1`` objects per tier. The writer merges from the bytes it holds
(no reads). It keeps its tiers as *spans* of the chain, each weighing how many
segments it holds, and merges the last ``K`` spans when they weigh the same;
on opening it takes its spans from the names it listed (a writer after a
takeover goes on merging where the last one stopped). Older versions wrote
``upto-<count>-...`` compactions of logs ``0..count-1``; they are read as
ranges from 0.

Epochs: fencing a stale writer
------------------------------

The lease (:mod:`hpo.lease`) keeps a second controller out in the ordinary
case, but the volume has no compare-and-swap (RunPod's S3 API lists no
conditional write): a controller paused between reading a stale lease and
writing its own (a GC pause, a laptop asleep) takes a lease that another
controller holds, and both drive the study. So the journal fences its writers
itself, with object names alone:

1. A writer, on opening, lists ``journal/`` once, resolves the journal (rule 3)
   and reads it up to log ``N``. It takes the epoch ``E`` = the highest epoch
   number anywhere on the volume + 1, with a random token, and writes the
   marker ``journal/epochs/<E>-<token>-from-<N>.json`` before any segment.
2. Its segments are ``<first>-e<E>-<token>.jsonl`` and its ranges
   ``range-<first>-<end>-e<E>-<token>.jsonl``: no two writers ever write the
   same object. Segments stay immutable: a failed write is retried with the same bytes.
3. Every process resolves the journal the same way, from names alone: a
   segment of epoch ``e`` from log ``f`` is *void* when a marker of an epoch
   newer than ``e`` starts at or before ``f``; a range of logs ``a..b-1`` (an
   ``upto-<n>`` compaction: ``a = 0, b = n``) is void when such a marker starts
   before ``b``, wherever ``a`` is. The journal is the chain of standing
   objects from log 0, each starting where the one before ended: at each
   position the standing range that reaches furthest, else the standing
   segment. Names from before epochs (no ``-e``) are epoch 0, so older studies
   open unchanged.
4. :meth:`VolumeJournalBackend.flush`, after writing its segment and before it
   returns, lists ``journal/epochs/`` (a few objects). A marker newer than its
   own raises :class:`JournalFencedError`, and so does every later flush. The
   controller flushes before every act in the world (launch, terminate, spec),
   so a fenced controller does nothing more.

Why this is safe:

* A writer writes only at positions at or after its own start, and only once
  its marker exists. So of two segments at one position the older epoch's is
  void, at most one segment stands at any position, and every reader builds the
  same journal.
* The new writer B read logs ``0..N-1``; they stand, because they were written
  before B's marker and any marker newer than B's starts at or after the
  position its own writer read, which includes them. Everything an older
  writer A writes at or after ``N`` is void. So the journal every reader sees
  is exactly what B read plus what B wrote: B's decisions are made on it.
* A range of logs ``a..b-1`` by writer A holds, below A's start, logs A read
  (they stand, as above) and from its start A's own logs. If no newer marker
  starts before ``b``, every newer writer read all of them, so none of A's logs
  in it is void: it holds exactly the standing logs ``a..b-1``, and any chain of
  standing objects gives the same journal. If one does (``s < b``), its log
  ``b - 1 >= s`` may be one B replaced, so the whole range is void, even when
  ``a >= s`` (then it holds nothing B read). A range's start does not enter
  the rule; its end does, as a compaction's count always did.
* A learns of B at its first flush after B's marker exists, and that flush
  precedes A's next act. Two writers taking the same epoch number (both listed
  before either marker existed) are ordered by their tokens, and the older one
  is fenced the same way.

Its limits:

* The window. A's flush can pass its check between B's listing and B's marker
  (B's open: one listing, reading the objects its cache lacks, one write), or
  B's marker can land between A's check and A's act. A then acts once (a pod
  launched or terminated) on a journal entry that B never reads. Recovery then
  relies on pod names: every pod of the study is named
  ``hpo-<study>-<trial>-<attempt>``, so a launch by A is visible by name to B,
  which adopts it or terminates it as a pod that no trial of its journal owns.
* A reader that has already handed Optuna logs of a segment that became void
  afterwards (written by A in the window, read before B's marker landed) cannot
  take them back out of Optuna's replay: its next read raises
  :class:`JournalError` asking for a reopen (the logs served are compared as
  bytes with the journal read again). A reader that notices before it hands
  them on rebuilds silently.
* Listings must show every object written before they began (true of a
  directory and of S3's strong read-after-write consistency).
* The cache is checked by object sizes, and each cached line is checked as a
  log when served: a segment replaced by other bytes of the same size that
  still parse as logs is not noticed until a fresh cache reads it.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from optuna.storages.journal import BaseJournalBackend

from hpo.errors import JournalError, JournalFencedError, VolumeNotFoundError
from hpo.journal import _epochs
from hpo.journal._cache import CacheState, JournalCache, default_cache_dir
from hpo.journal._epochs import Epoch, JournalView, Marker, Piece, covered_name, markers_in, voided, writer_at
from hpo.journal._validate import load_line, log_problem
from hpo.layout import StudyLayout
from hpo.volume import Volume, open_volume

log = logging.getLogger(__name__)

#: Logs are parsed for Optuna about this many bytes at a time (never the whole journal at once).
PARSE_CHUNK = 1 << 20
#: Objects a cold open fetches at once at least (the chain is known from the listing's names); a volume
#: that reads better wider (S3: its client's connection pool) says so by its ``read_concurrency``.
FETCH_THREADS = 8


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _encode(logs: list[dict[str, Any]]) -> bytes:
    # The same separators as Optuna's JournalFileBackend, so the cache is byte-compatible.
    return b"".join(json.dumps(entry, separators=(",", ":")).encode() + b"\n" for entry in logs)


def _after_lines(data: bytes | bytearray, count: int, start: int = 0) -> int:
    """The offset just after the ``count``-th newline of ``data`` from ``start``."""
    offset = start
    for _ in range(count):
        offset = data.index(b"\n", offset) + 1
    return offset


class _CachedLineBad(Exception):
    """A line that came from the local cache is no log: the cache is damaged, the volume has the logs."""


class VolumeJournalBackend(BaseJournalBackend):
    """The study's Optuna journal, stored as segments on the volume.

    Args:
        volume: The volume holding ``hpo/<study>/journal/``.
        study: The study's name.
        writer: True for the one process (the lease holder) that appends; it
            takes a new epoch on opening and must call :meth:`flush` to make its
            appends durable.
        cache_dir: Where the local cache lives (default :func:`default_cache_dir`).
        refresh_interval: How often a reader looks for new segments, in seconds.
        compact_every: The compaction's fan-out ``K``: every ``K`` segments the
            writer merges into one range, every ``K`` ranges of one size into
            one range ``K`` times as large, and so on.
        clock: A monotonic clock, injectable for tests.

    Raises:
        JournalError: The journal on the volume is broken (a segment missing or
            corrupt); the message names the volume and the key. A segment whose
            lines are no logs is named when its logs are read (the first
            ``read_logs``, which Optuna's ``JournalStorage`` makes as it opens).
    """

    def __init__(
        self,
        volume: Volume,
        study: str,
        *,
        writer: bool = False,
        cache_dir: Path | None = None,
        refresh_interval: float = 2.0,
        compact_every: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._volume = volume
        self._layout = StudyLayout(study)
        self._cache = JournalCache(cache_dir or default_cache_dir(), volume.url, study)
        self._writer = writer
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._blob = bytearray()  # the flushed logs, one JSON log a line: the cache file's bytes
        self._marks: list[tuple[int, int]] = [(0, 0)]  # (log number, its offset in _blob) where known, sorted
        self._sources: list[tuple[int, str | None, int]] = []  # (first log, key it came from or None: the cache, its line)
        self._pending: list[dict[str, Any]] = []  # appended since the last flush (writer)
        self._state = CacheState(volume.url)  # describes _blob
        self._markers: list[Marker] = []  # the epoch markers last listed
        self._epoch: Epoch | None = None
        self._fenced: str | None = None  # why every flush now fails
        self._diverged: str | None = None  # why every read now fails (readers)
        self._served = 0  # how many logs Optuna has been handed
        self._attempt: int | None = None  # logs in a segment whose write failed: retried with the same logs
        self._fanout = max(2, compact_every)
        self._spans: list[tuple[int, int, int]] = []  # the writer's compaction tiers: (first log, end, weight)
        self.segment_reads = 0  # journal objects read from the volume
        self.bytes_written = 0  # journal bytes this backend wrote: segments, ranges and its marker
        view = JournalView(self._layout, self._volume.list(self._layout.journal_dir + "/"), volume.url)
        with self._cache.locked():
            self._load(view)
        if writer:
            self._take_epoch(view)
            self._spans = view.spans(self._state.logs)
        self._last_refresh = clock()

    @property
    def cache_path(self) -> Path:
        """The local cache file, an Optuna journal file any Optuna tool can open."""
        return self._cache.path

    @property
    def pending(self) -> int:
        """How many appended logs are not yet on the volume."""
        return len(self._pending)

    @property
    def log_count(self) -> int:
        """How many logs the journal holds here: those read or flushed, then the pending ones."""
        return self._state.logs + len(self._pending)

    @property
    def parsed(self) -> int:
        """How many logs this backend holds parsed: the pending ones only (Optuna holds its own replay)."""
        return len(self._pending)

    @property
    def epoch(self) -> int | None:
        """The writer's epoch number (None for a reader): higher than any other on the volume when it opened."""
        return self._epoch.number if self._epoch is not None else None

    @property
    def fenced(self) -> bool:
        """True once a flush has found a newer writer: this backend will write nothing more."""
        return self._fenced is not None

    # -- pickling -----------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the volume by its address, as Optuna's ``JournalRedisBackend`` pickles its server by URL.

        Optuna's ``JournalStorage`` pickles (its conformance suite checks it), and
        an :class:`~hpo.volume.S3Volume` holds a boto3 client, which cannot be
        pickled; the copy reopens the volume from :attr:`Volume.address` (an S3
        volume then reads its credentials from the unpickling process's
        environment, as an agent on a pod does). The rest of the state, the logs
        read and pending included, is copied as it is: a copy of the writer is
        the same writer, with the same epoch, so only one of the two may go on
        writing.
        """
        state = self.__dict__.copy()
        state["_volume"] = self._volume.address
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._volume = open_volume(state["_volume"])

    # -- BaseJournalBackend -------------------------------------------------------------

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        """The logs from ``log_number_from`` on, parsed one at a time as they are taken (as Optuna's file backend).

        Flushed logs are kept as bytes only: each is parsed, and checked, as it
        is handed out, so the journal is never held parsed twice (once here,
        once in Optuna's replay). A line the local cache gave that is no log
        sends this backend back to the volume (a damaged cache); one a volume
        object gave is a :class:`JournalError` naming the object and the line.
        """
        if not self._writer and self._clock() - self._last_refresh >= self._refresh_interval:
            self.refresh()
        if self._diverged is not None:
            raise JournalError(self._diverged)
        return self._serve(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if not self._writer:
            raise JournalError(f"study {self._layout.study!r}: the journal is open read-only")
        if self._fenced is not None:
            raise JournalFencedError(self._fenced)
        self._pending.extend(logs)

    # -- our own ------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the pending logs to the volume as one new segment, then make sure no newer writer exists.

        The controller calls this before every side effect outside the journal
        (launching, terminating, writing a spec), so nothing that happened in the
        world is missing from the journal after a crash, and a controller that a
        newer one took the study from acts on nothing. Then the writer merges
        segments into ranges where a tier is full (see the module's docstring).

        Raises:
            JournalFencedError: A writer with a newer epoch has taken the study
                over (then and on every later call).
        """
        if not self._writer:
            return
        if self._fenced is not None:
            raise JournalFencedError(self._fenced)
        assert self._epoch is not None
        while self._pending:
            first = self._state.logs
            count = self._attempt if self._attempt is not None else len(self._pending)
            self._attempt = count  # a failed write is retried with exactly these logs: segments never change
            key = self._layout.journal_segment(first, self._epoch.number, self._epoch.token)
            data = _encode(self._pending[:count])
            self._volume.write_bytes(key, data)
            self.bytes_written += len(data)
            self._attempt = None
            with self._cache.locked():
                self._take(data, count, key, len(data))
            del self._pending[:count]
            self._spans.append((first, first + count, 1))
        # Every flush, even one that wrote nothing, and after the write: the acts until the next flush
        # rely on it (rule 4). It is the flush's only request besides the segment's PUT (no HEAD); a
        # conditional PUT could not stand in for it, as a newer writer's marker and our segments never
        # share a name (and RunPod's S3 API has no conditional writes).
        self._check_fence()
        self._merge_tiers()

    def refresh(self) -> None:
        """Pick up segments written since the last look (readers only).

        One GET per new segment and one for the name after the last, then one
        small listing of the epoch markers: a newer writer's segments carry its
        name, and logs already read may have been voided by it. A writer has
        nothing to pick up: it is the journal's only writer until it is fenced.
        """
        if self._writer:
            return
        self._last_refresh = self._clock()
        with self._cache.locked():
            self._adopt_shared()
            self._probe()
            markers = markers_in(self._layout, self._volume.list(self._layout.journal_epochs_dir + "/"))
            if markers == self._markers:
                return
            self._markers = markers
            reason = voided(self._layout, markers, self._state.covered)
            if reason is not None:
                self._rebuild(reason)
                return
            self._probe()

    # -- opening -------------------------------------------------------------------------

    def _load(self, view: JournalView) -> None:
        """Load the journal as ``view`` resolves it: the cache where it holds, then the volume. Under the lock."""
        self._markers = view.markers
        state = self._cache.read_state()
        if state.logs:
            reason = view.check_covered(state.covered)
            if reason is not None:
                log.warning(
                    "journal cache of study %r cannot be trusted (%s); rebuilding it from %s",
                    self._layout.study,
                    reason,
                    self._volume.url,
                )
                self._cache.reset()
                state = CacheState(self._volume.url)
        self._blob = self._cache.load(state)
        if len(self._blob) != state.bytes:
            state = CacheState(self._volume.url)
        self._state = state
        self._marks = [(0, 0)] if not state.logs else [(0, 0), (state.logs, state.bytes)]
        self._sources = [(0, None, 0)] if state.logs else []
        self._read_chain(view)
        view.check_chain(self._state.covered, self._state.logs)

    def _read_chain(self, view: JournalView) -> None:
        """Read the objects that carry the journal on from where it is, fetching the planned ones at once."""
        plan = self._plan(view)
        if len(plan) > 1:
            threads = max(FETCH_THREADS, self._volume.read_concurrency)
            with ThreadPoolExecutor(max_workers=min(threads, len(plan))) as pool:
                for planned, data in zip(plan, pool.map(lambda p: self._volume.read_bytes(p.key), plan), strict=True):
                    if view.next_piece(self._state.logs) != planned:
                        break  # a segment was not as long as the names said: go on one by one (check_chain decides)
                    self._read_piece(planned, data)
        while (piece := view.next_piece(self._state.logs)) is not None:
            self._read_piece(piece)

    def _plan(self, view: JournalView) -> list[Piece]:
        """The objects the names say carry the journal on (a segment taken to end where the next one starts)."""
        plan = []
        position = self._state.logs
        starts = list(view.segments())
        while (piece := view.next_piece(position)) is not None:
            plan.append(piece)
            if piece.end is not None:
                position = piece.end
                continue
            after = bisect.bisect_right(starts, position)
            if after == len(starts):
                break
            position = starts[after]
        return plan

    def _take_epoch(self, view: JournalView) -> None:
        """Take an epoch newer than any on the volume and leave its marker before writing anything."""
        self._epoch = Epoch(view.newest_epoch_number() + 1, _epochs.new_token())
        start = self._state.logs
        key = self._layout.journal_epoch_marker(self._epoch.number, self._epoch.token, start)
        marker = {
            "epoch": self._epoch.number,
            "token": self._epoch.token,
            "start": start,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        data = json.dumps(marker).encode()
        self._volume.write_bytes(key, data)
        self.bytes_written += len(data)
        self._markers = [*view.markers, Marker(self._epoch, start, key)]
        log.info("study %r: journal writer took epoch %s from log %d", self._layout.study, self._epoch, start)

    # -- reading -------------------------------------------------------------------------

    def _read_piece(self, piece: Piece, data: bytes | None = None) -> None:
        """Take the logs the journal lacks from one object (a segment, or the part of a range after it). Under the lock.

        Checked whole for shape (an object is written atomically, so it ends with
        a newline, and a range holds as many lines as its name says); each line
        is checked as a log when it is served.
        """
        if data is None:
            data = self._volume.read_bytes(piece.key)
        self.segment_reads += 1
        if not data or not data.endswith(b"\n"):
            raise JournalError(f"{self._volume.url}: {piece.key}: empty or truncated journal segment")
        lines = data.count(b"\n")
        if piece.end is None:
            self._take(data, lines, piece.key, len(data))
            return
        if lines != piece.end - piece.start:
            raise JournalError(
                f"{self._volume.url}: {piece.key} holds {lines} logs, its name says {piece.end - piece.start}"
            )
        skip = self._state.logs - piece.start
        cut = _after_lines(data, skip)
        if skip and not self._blob.endswith(data[:cut]):
            raise JournalError(f"{self._volume.url}: {piece.key} does not hold the logs the journal has before log {self._state.logs}")
        self._take(data[cut:], lines - skip, piece.key, len(data), skip)

    def _probe(self) -> None:
        """Read the segments that follow the last one, by name, until one is missing. Under the lock."""
        while True:
            first = self._state.logs
            epoch = writer_at(self._markers, first)
            key = self._layout.journal_segment(first, epoch.number, epoch.token)
            try:
                data = self._volume.read_bytes(key)
            except VolumeNotFoundError:
                return
            self._read_piece(Piece("segment", first, None, epoch, key, len(data)), data)

    def _adopt_shared(self) -> None:
        """Take what another process on this machine added to the shared cache since we last looked."""
        shared = self._cache.read_state()
        if shared.logs <= self._state.logs or not shared.extends(self._state):
            return
        data = self._cache.read_tail(self._state.bytes, shared.bytes)
        if len(data) != shared.bytes - self._state.bytes or data.count(b"\n") != shared.logs - self._state.logs:
            return  # torn: the other process died mid-extend; the volume has the logs
        if not data.endswith(b"\n"):
            return
        self._sources.append((self._state.logs, None, 0))  # checked as served, like the rest of the cache
        self._blob += data
        self._state = shared
        self._marks.append((shared.logs, shared.bytes))

    def _serve(self, position: int) -> Iterator[dict[str, Any]]:
        """Hand out logs from ``position``: flushed ones parsed from their bytes a chunk at a time, then pending ones."""
        while position < self._state.logs:
            end = self._state.logs
            offset = self._offset(position)
            try:
                for entry in self._parse(position, offset, end):
                    position += 1
                    self._served = max(self._served, position)
                    yield entry
            except _CachedLineBad as bad:
                with self._cache.locked():
                    self._reload(f"its cache held a line that is no log ({bad})", served=position)
                if self._diverged is not None:
                    raise JournalError(self._diverged) from None
        flushed = self._state.logs
        for entry in self._pending[position - flushed :]:
            position += 1
            self._served = max(self._served, position)
            yield entry

    def _parse(self, position: int, offset: int, end: int) -> Iterator[dict[str, Any]]:
        """Logs ``position..end-1`` parsed from ``_blob`` (``offset`` is where log ``position`` begins), checked."""
        stop = self._state.bytes if end == self._state.logs else self._offset(end)
        while position < end:
            chunk_end = stop if stop - offset <= PARSE_CHUNK else self._blob.index(b"\n", offset + PARSE_CHUNK) + 1
            lines = bytes(self._blob[offset:chunk_end]).split(b"\n")
            lines.pop()  # after the last newline
            for line in lines:
                try:
                    entry = load_line(line)
                except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                    self._bad(position, f"corrupt journal segment ({_short(exc)})")
                problem = log_problem(entry)
                if problem is not None:
                    self._bad(position, f"not an Optuna journal log ({problem})")
                yield entry
                position += 1
            offset = chunk_end
            self._mark(position, offset)

    def _bad(self, position: int, what: str) -> None:
        """Raise for log ``position``, which is no log: where it came from decides what."""
        at = bisect.bisect_right(self._sources, position, key=lambda source: source[0]) - 1
        first, key, line = self._sources[at] if at >= 0 else (0, None, 0)
        if key is None:
            raise _CachedLineBad(f"log {position}: {what}")
        raise JournalError(f"{self._volume.url}: {key}: line {line + position - first + 1}: {what}")

    def _offset(self, position: int) -> int:
        """Where log ``position`` begins in ``_blob`` (``position`` at most the flushed count)."""
        if position == self._state.logs:
            return self._state.bytes
        at = bisect.bisect_right(self._marks, (position, 1 << 62)) - 1
        known, offset = self._marks[at]
        offset = _after_lines(self._blob, position - known, offset)
        self._mark(position, offset)
        return offset

    def _mark(self, position: int, offset: int) -> None:
        at = bisect.bisect_left(self._marks, (position, 0))
        if at == len(self._marks) or self._marks[at][0] != position:
            self._marks.insert(at, (position, offset))

    def _rebuild(self, reason: str) -> None:
        """Reload the journal from the volume because logs already read were voided. Under the lock."""
        log.warning("study %r: %s; reloading the journal from %s", self._layout.study, reason, self._volume.url)
        self._reload(reason, served=self._served)

    def _reload(self, reason: str, *, served: int) -> None:
        """Read the journal afresh from the volume; diverge if its first ``served`` logs are not what was served.

        The served logs are compared as bytes: they were handed to Optuna's
        replay, which cannot take them back. Under the lock.
        """
        served = min(served, self._state.logs)
        before = bytes(self._blob[: self._offset(served)])
        self._cache.reset()
        view = JournalView(self._layout, self._volume.list(self._layout.journal_dir + "/"), self._volume.url)
        self._load(view)
        if self._state.logs < served or self._blob[: len(before)] != before:
            self._diverged = (
                f"study {self._layout.study!r}: a newer controller voided journal logs this reader had "
                f"already shown ({reason}); reopen the study to see it as it stands"
            )

    def _take(self, data: bytes, logs: int, key: str, size: int, line: int = 0) -> None:
        """Add ``logs`` logs (``data``, whole lines of ``key``, from its line ``line``) as flushed; extend the cache.

        Under the lock. The cache is extended only when it is where we were;
        another process on this machine may already have added the same object
        (fine), or rebuilt it differently (then it is left alone: every open
        checks it anyway).
        """
        before = self._state
        self._sources.append((before.logs, key, line))
        self._blob += data
        name = covered_name(self._layout, key)
        after = CacheState(self._volume.url, before.logs + logs, before.bytes + len(data), (*before.covered, (name, size)))
        if self._cache.read_state() == before:
            after = self._cache.extend(before, data, logs, name, size)
        self._state = after
        self._marks.append((after.logs, after.bytes))

    # -- writing -------------------------------------------------------------------------

    def _check_fence(self) -> None:
        """Raise :class:`JournalFencedError` if a writer with a newer epoch has left its marker."""
        assert self._epoch is not None
        markers = markers_in(self._layout, self._volume.list(self._layout.journal_epochs_dir + "/"))
        newer = [m for m in markers if m.epoch > self._epoch]
        if not newer:
            return
        newest = max(newer, key=lambda m: m.epoch)
        self._fenced = (
            f"study {self._layout.study!r}: a controller with a newer epoch ({newest.epoch}) took the study over "
            f"from journal log {newest.start}; this controller (epoch {self._epoch}) stops without acting"
        )
        raise JournalFencedError(self._fenced)

    def _merge_tiers(self) -> None:
        """Merge the last ``K`` spans into one range while they weigh the same (a tier is full).

        The bytes come from memory: this writer holds every flushed log as
        bytes. A failed write leaves the tiers as they were, for the next flush.
        """
        assert self._epoch is not None
        fanout = self._fanout
        while len(self._spans) >= fanout:
            last = self._spans[-fanout:]
            weight = last[0][2]
            if weight == 0 or any(span[2] != weight for span in last):
                return
            first, end = last[0][0], last[-1][1]
            key = self._layout.journal_range(first, end, self._epoch.number, self._epoch.token)
            start, stop = self._offset(first), self._offset(end)
            with memoryview(self._blob) as view:
                data = bytes(view[start:stop])
            self._volume.write_bytes(key, data)
            self.bytes_written += len(data)
            self._spans[-fanout:] = [(first, end, weight * fanout)]
