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
2. Its segments are ``<first>-e<E>-<token>.jsonl`` and its compactions
   ``upto-<count>-e<E>-<token>.jsonl``: no two writers ever write the same
   object. Segments stay immutable: a failed write is retried with the same bytes.
3. Every process resolves the journal the same way, from names alone: a
   segment of epoch ``e`` from log ``f`` is *void* when a marker of an epoch
   newer than ``e`` starts at or before ``f``; a compaction of ``n`` logs is void
   when such a marker starts before ``n``. The journal is the standing
   compaction that holds the most logs, then the standing segments, each
   starting where the one before ended. Names from before epochs (no ``-e``)
   are epoch 0, so older studies open unchanged.
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
* A learns of B at its first flush after B's marker exists, and that flush
  precedes A's next act. Two writers taking the same epoch number (both listed
  before either marker existed) are ordered by their tokens, and the older one
  is fenced the same way.

Its limits:

* The window. A's flush can pass its check between B's listing and B's marker
  (B's open: one listing, reading the segments its cache lacks, one write), or
  B's marker can land between A's check and A's act. A then acts once (a pod
  launched or terminated) on a journal entry that B never reads. Recovery then
  relies on pod names: every pod of the study is named
  ``hpo-<study>-<trial>-<attempt>``, so a launch by A is visible by name to B,
  which adopts it or terminates it as a pod that no trial of its journal owns.
* A reader that has already handed Optuna logs of a segment that became void
  afterwards (written by A in the window, read before B's marker landed) cannot
  take them back out of Optuna's replay: its next read raises
  :class:`JournalError` asking for a reopen. A reader that notices before it
  hands them on rebuilds silently.
* Listings must show every object written before they began (true of a
  directory and of S3's strong read-after-write consistency).
* The cache is checked by object sizes: a segment replaced by other bytes of the
  same size is not noticed until a fresh cache reads it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.storages.journal import BaseJournalBackend

from hpo.errors import JournalError, JournalFencedError, VolumeNotFoundError
from hpo.journal import _epochs
from hpo.journal._cache import CacheState, JournalCache, default_cache_dir
from hpo.journal._epochs import Epoch, JournalView, Marker, Piece, covered_name, markers_in, voided, writer_at
from hpo.journal._validate import load_line, log_problem, parse_logs
from hpo.layout import StudyLayout
from hpo.volume import Volume, open_volume

log = logging.getLogger(__name__)


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _encode(logs: list[dict[str, Any]]) -> bytes:
    # The same separators as Optuna's JournalFileBackend, so the cache is byte-compatible.
    return b"".join(json.dumps(entry, separators=(",", ":")).encode() + b"\n" for entry in logs)


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
        compact_every: The writer compacts the journal after this many segments.
        clock: A monotonic clock, injectable for tests.

    Raises:
        JournalError: The journal on the volume is broken (a segment missing or
            corrupt); the message names the volume and the key.
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
        self._markers: list[Marker] = []  # the epoch markers last listed
        self._epoch: Epoch | None = None
        self._fenced: str | None = None  # why every flush now fails
        self._diverged: str | None = None  # why every read now fails (readers)
        self._served = 0  # how many logs Optuna has been handed
        self._attempt_end: int | None = None  # end of a segment whose write failed: retried with the same logs
        self.segment_reads = 0
        self._compact_every = compact_every
        self._since_compaction = 0
        view = JournalView(self._layout, self._volume.list(self._layout.journal_dir + "/"), volume.url)
        with self._cache.locked():
            self._load(view)
        if writer:
            self._take_epoch(view)
        self._last_refresh = clock()

    @property
    def cache_path(self) -> Path:
        """The local cache file, an Optuna journal file any Optuna tool can open."""
        return self._cache.path

    @property
    def pending(self) -> int:
        """How many appended logs are not yet on the volume."""
        return len(self._logs) - self._state.logs

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

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        if not self._writer and self._clock() - self._last_refresh >= self._refresh_interval:
            self.refresh()
        if self._diverged is not None:
            raise JournalError(self._diverged)
        self._served = max(self._served, len(self._logs))
        return self._logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if not self._writer:
            raise JournalError(f"study {self._layout.study!r}: the journal is open read-only")
        if self._fenced is not None:
            raise JournalFencedError(self._fenced)
        self._logs.extend(logs)

    # -- our own ------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the pending logs to the volume as one new segment, then make sure no newer writer exists.

        The controller calls this before every side effect outside the journal
        (launching, terminating, writing a spec), so nothing that happened in the
        world is missing from the journal after a crash, and a controller that a
        newer one took the study from acts on nothing.

        Raises:
            JournalFencedError: A writer with a newer epoch has taken the study
                over (then and on every later call).
        """
        if not self._writer:
            return
        if self._fenced is not None:
            raise JournalFencedError(self._fenced)
        assert self._epoch is not None
        while self.pending:
            first = self._state.logs
            end = self._attempt_end if self._attempt_end is not None else len(self._logs)
            self._attempt_end = end  # a failed write is retried with exactly these logs: segments never change
            key = self._layout.journal_segment(first, self._epoch.number, self._epoch.token)
            data = _encode(self._logs[first:end])
            self._volume.write_bytes(key, data)
            self._attempt_end = None
            with self._cache.locked():
                self._record(data, end - first, key, len(data))
            self._since_compaction += 1
        # Every flush, even one that wrote nothing, and after the write: the acts until the next flush
        # rely on it (rule 4). It is the flush's only request besides the segment's PUT (no HEAD); a
        # conditional PUT could not stand in for it, as a newer writer's marker and our segments never
        # share a name (and RunPod's S3 API has no conditional writes).
        self._check_fence()
        if self._since_compaction >= self._compact_every:
            self._compact()

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
        self._logs = self._cache.load(state)
        if len(self._logs) != state.logs:
            state = CacheState(self._volume.url)
        self._state = state
        compaction = view.compaction()
        if compaction is not None and compaction.position > state.logs:
            self._read_compaction(compaction)
        segments = view.segments()
        while self._state.logs in segments:
            piece = segments[self._state.logs]
            self._take(*self._read_segment(piece.key), piece.key)
        view.check_chain(self._state.covered, self._state.logs)
        since = compaction.position if compaction is not None else 0
        self._since_compaction = sum(1 for first in segments if first >= since)

    def _take_epoch(self, view: JournalView) -> None:
        """Take an epoch newer than any on the volume and leave its marker before writing anything."""
        self._epoch = Epoch(view.newest_epoch_number() + 1, _epochs.new_token())
        start = self._state.logs
        key = self._layout.journal_epoch_marker(self._epoch.number, self._epoch.token, start)
        self._volume.write_json(
            key,
            {
                "epoch": self._epoch.number,
                "token": self._epoch.token,
                "start": start,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            },
        )
        self._markers = [*view.markers, Marker(self._epoch, start, key)]
        log.info("study %r: journal writer took epoch %s from log %d", self._layout.study, self._epoch, start)

    def _read_compaction(self, piece: Piece) -> None:
        """Take the logs the cache lacks from one compacted object. Call under the cache lock."""
        data, logs = self._read_segment(piece.key)
        lines = data.splitlines(keepends=True)
        if len(lines) != piece.position:
            raise JournalError(
                f"{self._volume.url}: {piece.key} holds {len(lines)} logs, its name says {piece.position}"
            )
        if self._logs and logs[0] != self._logs[0]:
            raise JournalError(f"{self._volume.url}: {piece.key} does not begin like the cached journal")
        new = lines[self._state.logs :]
        self._logs.extend(logs[self._state.logs :])
        self._record(b"".join(new), len(new), piece.key, len(data))

    # -- reading -------------------------------------------------------------------------

    def _probe(self) -> None:
        """Read the segments that follow the last one, by name, until one is missing. Under the lock."""
        while True:
            first = self._state.logs
            epoch = writer_at(self._markers, first)
            key = self._layout.journal_segment(first, epoch.number, epoch.token)
            try:
                data, logs = self._read_segment(key)
            except VolumeNotFoundError:
                return
            self._take(data, logs, key)

    def _adopt_shared(self) -> None:
        """Take what another process on this machine added to the shared cache since we last looked."""
        shared = self._cache.read_state()
        if shared.logs <= self._state.logs or not shared.extends(self._state):
            return
        lines = self._cache.read_tail(self._state.bytes, shared.bytes).splitlines()
        if len(lines) != shared.logs - self._state.logs:
            return  # torn: the other process died mid-extend; the volume has the logs
        logs = parse_logs(lines)
        if logs is None:
            return  # not logs after all (a damaged cache): the volume has them
        self._logs.extend(logs)
        self._state = shared

    def _rebuild(self, reason: str) -> None:
        """Reload the journal from the volume because logs already read were voided. Under the lock."""
        log.warning("study %r: %s; reloading the journal from %s", self._layout.study, reason, self._volume.url)
        served = self._logs[: self._served]
        self._cache.reset()
        view = JournalView(self._layout, self._volume.list(self._layout.journal_dir + "/"), self._volume.url)
        self._load(view)
        if self._logs[: len(served)] != served:
            self._diverged = (
                f"study {self._layout.study!r}: a newer controller voided journal logs this reader had "
                f"already shown ({reason}); reopen the study to see it as it stands"
            )

    def _read_segment(self, key: str) -> tuple[bytes, list[dict[str, Any]]]:
        """One journal object and its logs, checked whole: a segment is written atomically, so every line must be a log.

        "A log" is what Optuna's replay can apply (:func:`log_problem`): the
        volume is writable by every pod, and a line Optuna chokes on would
        otherwise surface as a ``KeyError`` in every command that opens the study.
        The logs are returned as parsed here, one per line, so no line is parsed twice.
        """
        data = self._volume.read_bytes(key)
        self.segment_reads += 1
        logs = []
        for number, line in enumerate(data.splitlines(), 1):
            try:
                entry = load_line(line)
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                raise JournalError(
                    f"{self._volume.url}: {key}: line {number}: corrupt journal segment ({_short(exc)})"
                ) from None
            problem = log_problem(entry)
            if problem is not None:
                raise JournalError(f"{self._volume.url}: {key}: line {number}: not an Optuna journal log ({problem})")
            logs.append(entry)
        if not data or not data.endswith(b"\n"):
            raise JournalError(f"{self._volume.url}: {key}: empty or truncated journal segment")
        return data, logs

    def _take(self, data: bytes, logs: list[dict[str, Any]], key: str) -> None:
        """Add one segment's logs (``data``, parsed and checked by :meth:`_read_segment`) to memory and the cache.

        Under the lock.
        """
        self._logs.extend(logs)
        self._record(data, len(logs), key, len(data))

    def _record(self, data: bytes, logs: int, key: str, size: int) -> None:
        """Count ``logs`` more logs (already in memory) as flushed, from ``key``; extend the cache. Under the lock.

        The cache is extended only when it is where we were; another process on
        this machine may already have added the same object (fine), or rebuilt
        it differently (then it is left alone: every open checks it anyway).
        """
        before = self._state
        name = covered_name(self._layout, key)
        covered = (*before.covered, (name, size))
        after = CacheState(self._volume.url, before.logs + logs, before.bytes + len(data), covered)
        if self._cache.read_state() == before:
            after = self._cache.extend(before, data, logs, name, size)
        self._state = after

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

    def _compact(self) -> None:
        """Write every flushed log as one object, so the next open reads it instead of many segments.

        Segments are kept: a reader probing for the next segment by name never
        finds a hole, and the listing at open stays one or two pages long for
        any study that fits in memory. The compaction carries the writer's
        epoch, so one written after a newer writer started is void (see above).
        """
        assert self._epoch is not None
        count = self._state.logs
        key = self._layout.journal_compaction(count, self._epoch.number, self._epoch.token)
        self._volume.write_bytes(key, _encode(self._logs[:count]))
        self._since_compaction = 0
