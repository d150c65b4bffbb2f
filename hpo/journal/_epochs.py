"""Epochs: which journal objects on the volume make up the study's journal.

Every writer takes an :class:`Epoch` when it opens the journal and leaves a
marker ``journal/epochs/<epoch>-<token>-from-<start>.json``; its segments and
compactions carry the epoch in their names. This module turns one listing
(or just the markers) into the chain a reader follows; it reads no object and
needs no clock, so every process that sees the same names resolves the same
journal. The argument for why that is safe is in :mod:`hpo.journal._backend`.
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hpo.errors import JournalError
from hpo.layout import JOURNAL_TOKEN_CHARS, StudyLayout
from hpo.volume import ObjectInfo


@dataclass(frozen=True, order=True)
class Epoch:
    """A writer's epoch: a number, then a random token that orders two writers that took the same number.

    Two controllers that list the volume before either has left its marker
    take the same number; the token keeps their object names apart and decides,
    the same way for every reader, which of them is newer. Objects named
    without an epoch (journals written before epochs existed) are ``Epoch(0, "")``.
    """

    number: int
    token: str = ""

    def __str__(self) -> str:
        return f"{self.number}-{self.token}" if self.token else str(self.number)


LEGACY = Epoch(0, "")


def new_token() -> str:
    """A fresh random epoch token (a module function, so tests can make it deterministic)."""
    return secrets.token_hex(JOURNAL_TOKEN_CHARS // 2)


@dataclass(frozen=True)
class Marker:
    """A writer's epoch marker: it took ``epoch`` after reading logs ``0..start-1``."""

    epoch: Epoch
    start: int
    key: str


@dataclass(frozen=True)
class Piece:
    """A journal object: a segment (logs from ``start``; its end is known once read) or a range.

    A range holds logs ``start..end-1``: ``range-<start>-<end>-...`` objects,
    and the ``upto-<end>-...`` compactions of older versions (``start`` 0).
    """

    kind: str  # "segment" or "range"
    start: int
    end: int | None  # None for a segment
    epoch: Epoch
    key: str
    size: int

    @property
    def limit(self) -> int:
        """A newer writer's marker voids this piece when it starts before ``limit`` (see :func:`superseding`)."""
        return self.start + 1 if self.end is None else self.end


def piece_of(layout: StudyLayout, key: str, size: int = 0) -> Piece | None:
    """The piece a journal key names (None for epoch markers and keys that are no journal object)."""
    parsed = layout.parse_journal_key(key)
    if parsed is None or parsed.kind == "epoch":
        return None
    epoch = Epoch(parsed.epoch, parsed.token)
    if parsed.kind == "segment":
        return Piece("segment", parsed.number, None, epoch, key, size)
    if parsed.kind == "compaction":
        return Piece("range", 0, parsed.number, epoch, key, size)
    return Piece("range", parsed.number, parsed.end, epoch, key, size)


def markers_in(layout: StudyLayout, infos: Iterable[ObjectInfo]) -> list[Marker]:
    """The epoch markers among ``infos``, oldest epoch first."""
    found = []
    for info in infos:
        parsed = layout.parse_journal_key(info.key)
        if parsed is not None and parsed.kind == "epoch":
            found.append(Marker(Epoch(parsed.epoch, parsed.token), parsed.number, info.key))
    return sorted(found, key=lambda m: (m.epoch, m.start))


def superseding(markers: Sequence[Marker], piece: Piece) -> Marker | None:
    """The newest marker that voids ``piece``, or None if the piece stands.

    A marker voids a piece of an older epoch when it starts before the piece's
    :attr:`~Piece.limit`. For a segment from log ``f`` that is ``f + 1``: the
    newer writer started at or before ``f``, never read the segment, and writes
    its own logs from its start. For a range of logs ``a..b-1`` it is ``b``,
    wherever the range begins: a writer that started before ``b`` never read
    the range's last log (so the range may hold logs it replaced), while one that
    started at or after ``b`` read every log of it, as it stands (the argument in
    :mod:`hpo.journal._backend`). The older ``upto-<n>`` compactions are ranges
    from 0, so the rule for them is unchanged: void when a newer writer started
    before ``n``.
    """
    void = [m for m in markers if m.epoch > piece.epoch and m.start < piece.limit]
    return max(void, key=lambda m: m.epoch, default=None)


def writer_at(markers: Sequence[Marker], position: int) -> Epoch:
    """The epoch whose segment can continue the journal at log ``position``.

    Only a writer whose marker starts at or before ``position`` writes there,
    and every older one is void there, so it is the newest such marker's epoch
    (epoch 0 before any marker: a journal from before epochs existed).
    """
    return max((m.epoch for m in markers if m.start <= position), default=LEGACY)


#: A warm reader behind the journal reads a range that starts before its position (and skips the part it
#: has) rather than more than this many segments one by one.
SEGMENTS_BEFORE_A_RANGE = 8


class JournalView:
    """One listing of ``hpo/<study>/journal/``, resolved into the study's journal.

    Args:
        layout: The study's layout.
        infos: The listing (keys that are not journal objects are ignored).
        volume_url: For messages.
    """

    def __init__(self, layout: StudyLayout, infos: Iterable[ObjectInfo], volume_url: str) -> None:
        self._layout = layout
        self._url = volume_url
        infos = list(infos)
        self.markers = markers_in(layout, infos)
        self.pieces: dict[str, Piece] = {}
        self._segments: dict[int, Piece] | None = None
        self._ranges: dict[int, Piece] | None = None
        for info in infos:
            piece = piece_of(layout, info.key, info.size)
            if piece is not None:
                self.pieces[info.key] = piece

    def stands(self, piece: Piece) -> bool:
        """True unless a newer writer's marker voids ``piece``."""
        return superseding(self.markers, piece) is None

    def segments(self) -> dict[int, Piece]:
        """The segments that stand, by first log: at most one per position (see the module's argument)."""
        if self._segments is not None:
            return self._segments
        chain: dict[int, Piece] = {}
        for piece in self.pieces.values():
            if piece.kind == "segment" and self.stands(piece):
                other = chain.get(piece.start)
                if other is None or piece.epoch > other.epoch:
                    chain[piece.start] = piece
        self._segments = dict(sorted(chain.items()))
        return self._segments

    def ranges(self) -> dict[int, Piece]:
        """The standing range that reaches furthest from each first log (the newest epoch of equals)."""
        if self._ranges is not None:
            return self._ranges
        best: dict[int, Piece] = {}
        for piece in self.pieces.values():
            if piece.kind == "range" and self.stands(piece):
                other = best.get(piece.start)
                if other is None or (piece.limit, piece.epoch) > (other.limit, other.epoch):
                    best[piece.start] = piece
        self._ranges = best
        return best

    def next_piece(self, position: int) -> Piece | None:
        """The object to read next for a journal read up to log ``position`` (None: nothing stands there).

        Fewest objects first: the standing range from ``position`` that reaches
        furthest, else the segment there. A range that begins before
        ``position`` (a cache behind a compaction) is read, for the part after
        ``position``, when no segment is there or it saves more than
        :data:`SEGMENTS_BEFORE_A_RANGE` segment reads.
        """
        exact = self.ranges().get(position)
        if exact is not None:
            return exact
        segment = self.segments().get(position)
        over = [p for p in self.ranges().values() if p.start < position < p.limit]
        if over:
            cover = max(over, key=lambda p: (p.limit, p.epoch))
            starts = list(self.segments())
            skipped = bisect.bisect_left(starts, cover.limit) - bisect.bisect_left(starts, position)
            if segment is None or skipped > SEGMENTS_BEFORE_A_RANGE:
                return cover
        return segment

    def spans(self, end: int) -> list[tuple[int, int, int]]:
        """The journal up to log ``end`` as the fewest standing objects cover it, by names alone.

        Each span is ``(first log, end, weight)``, the weight being how many
        standing segments it holds: what a writer continues its compaction
        tiers from. A segment is taken to end where the next standing segment
        begins (the journal was read whole, so it does). Where names alone do
        not lead on, the rest is one span of weight 0, which nothing merges with.
        """
        segments = self.segments()
        starts = list(segments)
        spans = []
        position = 0
        while position < end:
            piece = self.ranges().get(position)
            if piece is not None and piece.limit <= end:
                stop = piece.limit
            elif position in segments:
                after = bisect.bisect_right(starts, position)
                stop = starts[after] if after < len(starts) else end
            else:
                spans.append((position, end, 0))
                break
            if stop <= position or stop > end:
                spans.append((position, end, 0))
                break
            weight = bisect.bisect_left(starts, stop) - bisect.bisect_left(starts, position)
            spans.append((position, stop, weight))
            position = stop
        return spans

    def newest_epoch_number(self) -> int:
        """The highest epoch number any marker or object on the volume carries (0 if none)."""
        numbers = [m.epoch.number for m in self.markers] + [p.epoch.number for p in self.pieces.values()]
        return max(numbers, default=0)

    def check_covered(self, covered: Sequence[tuple[str, int]]) -> str | None:
        """Why a cache built from ``covered`` (journal object names and sizes) cannot be trusted, or None.

        Every object it came from must still be listed, at the same size, and
        not voided by a newer writer's marker.
        """
        for name, size in covered:
            key = f"{self._layout.journal_dir}/{name}"
            piece = self.pieces.get(key)
            if piece is None:
                return f"{key} is missing"
            if piece.size != size:
                return f"{key} is {piece.size} bytes, the cache read {size}"
            void = superseding(self.markers, piece)
            if void is not None:
                return f"{key} was superseded by epoch {void.epoch} ({void.key})"
        return None

    def check_chain(self, covered: Sequence[tuple[str, int]], end: int) -> None:
        """Raise :class:`JournalError` unless the journal read (``covered``, ending at log ``end``) is whole.

        Every standing segment from the end of the last range read on must be
        one of the segments read. One off the chain means a segment is missing
        (the chain stopped short of it) or has the wrong length (the chain
        stepped over its start): the journal is broken.
        """
        keys = [f"{self._layout.journal_dir}/{name}" for name, _size in covered]
        read = [p for p in (piece_of(self._layout, key) for key in keys) if p is not None]
        base = max((p.limit for p in read if p.kind == "range"), default=0)
        on_chain = {p.start for p in read if p.kind == "segment"}
        off = [p for p in self.segments() if p >= base and p not in on_chain]
        if not off:
            return
        previous = keys[-1] if keys else None
        stray = self.segments()[off[0]].key
        after = f" after {previous}" if previous else ""
        if off[0] > end:
            problem = f"no segment starts at log {end}{after}, but {stray} exists"
        else:
            problem = f"{stray} starts at log {off[0]}, inside the logs before it{after}"
        raise JournalError(f"{self._url}: study {self._layout.study!r}: the journal is broken: {problem}")


def covered_name(layout: StudyLayout, key: str) -> str:
    """A journal object's name as the cache's sidecar records it (relative to the journal folder)."""
    return key[len(layout.journal_dir) + 1 :]


def voided(layout: StudyLayout, markers: Sequence[Marker], covered: Sequence[tuple[str, int]]) -> str | None:
    """Why logs read from ``covered`` (journal object names and sizes) no longer stand, or None.

    Needs only the markers, so a reader can ask it after each small listing of them.
    """
    for name, _size in covered:
        key = f"{layout.journal_dir}/{name}"
        piece = piece_of(layout, key)
        if piece is None:
            return f"{key} is not a journal object"
        void = superseding(markers, piece)
        if void is not None:
            return f"{key} was superseded by epoch {void.epoch} ({void.key})"
    return None
