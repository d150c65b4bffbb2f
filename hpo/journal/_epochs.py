"""Epochs: which journal objects on the volume make up the study's journal.

Every writer takes an :class:`Epoch` when it opens the journal and leaves a
marker ``journal/epochs/<epoch>-<token>-from-<start>.json``; its segments and
compactions carry the epoch in their names. This module turns one listing
(or just the markers) into the chain a reader follows; it reads no object and
needs no clock, so every process that sees the same names resolves the same
journal. The argument for why that is safe is in :mod:`hpo.journal._backend`.
"""

from __future__ import annotations

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
    """A segment (``position`` = its first log) or a compaction (``position`` = its log count)."""

    kind: str
    position: int
    epoch: Epoch
    key: str
    size: int


def markers_in(layout: StudyLayout, infos: Iterable[ObjectInfo]) -> list[Marker]:
    """The epoch markers among ``infos``, oldest epoch first."""
    found = []
    for info in infos:
        parsed = layout.parse_journal_key(info.key)
        if parsed is not None and parsed.kind == "epoch":
            found.append(Marker(Epoch(parsed.epoch, parsed.token), parsed.number, info.key))
    return sorted(found, key=lambda m: (m.epoch, m.start))


def superseding(markers: Sequence[Marker], kind: str, position: int, epoch: Epoch) -> Marker | None:
    """The newest marker that voids a piece of ``epoch`` at ``position``, or None if the piece stands.

    A segment from log ``f`` is void when a newer writer started at or before
    ``f``: that writer never read it and writes its own logs from its start. A
    compaction of ``n`` logs is void when a newer writer started before ``n``:
    it may hold logs that writer never read.
    """
    void = [
        m
        for m in markers
        if m.epoch > epoch and (m.start <= position if kind == "segment" else m.start < position)
    ]
    return max(void, key=lambda m: m.epoch, default=None)


def writer_at(markers: Sequence[Marker], position: int) -> Epoch:
    """The epoch whose segment can continue the journal at log ``position``.

    Only a writer whose marker starts at or before ``position`` writes there,
    and every older one is void there, so it is the newest such marker's epoch
    (epoch 0 before any marker: a journal from before epochs existed).
    """
    return max((m.epoch for m in markers if m.start <= position), default=LEGACY)


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
        for info in infos:
            parsed = layout.parse_journal_key(info.key)
            if parsed is not None and parsed.kind != "epoch":
                epoch = Epoch(parsed.epoch, parsed.token)
                self.pieces[info.key] = Piece(parsed.kind, parsed.number, epoch, info.key, info.size)

    def stands(self, piece: Piece) -> bool:
        """True unless a newer writer's marker voids ``piece``."""
        return superseding(self.markers, piece.kind, piece.position, piece.epoch) is None

    def segments(self) -> dict[int, Piece]:
        """The segments that stand, by first log: at most one per position (see the module's argument)."""
        if self._segments is not None:
            return self._segments
        chain: dict[int, Piece] = {}
        for piece in self.pieces.values():
            if piece.kind == "segment" and self.stands(piece):
                other = chain.get(piece.position)
                if other is None or piece.epoch > other.epoch:
                    chain[piece.position] = piece
        self._segments = chain
        return chain

    def compaction(self) -> Piece | None:
        """The standing compaction that holds the most logs, or None."""
        standing = [p for p in self.pieces.values() if p.kind == "compaction" and self.stands(p)]
        return max(standing, key=lambda p: (p.position, p.epoch), default=None)

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
            void = superseding(self.markers, piece.kind, piece.position, piece.epoch)
            if void is not None:
                return f"{key} was superseded by epoch {void.epoch} ({void.key})"
        return None

    def check_chain(self, covered: Sequence[tuple[str, int]], end: int) -> None:
        """Raise :class:`JournalError` unless the journal read (``covered``, ending at log ``end``) is whole.

        Every standing segment from the last compaction read on must be one of
        the segments read. One off the chain means a segment is missing (the
        chain stopped short of it) or has the wrong length (the chain stepped
        over its start): the journal is broken.
        """
        keys = [f"{self._layout.journal_dir}/{name}" for name, _size in covered]
        parsed = [k for k in (self._layout.parse_journal_key(key) for key in keys) if k is not None]
        base = max((k.number for k in parsed if k.kind == "compaction"), default=0)
        on_chain = {k.number for k in parsed if k.kind == "segment"}
        off = sorted(p for p in self.segments() if p >= base and p not in on_chain)
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
        parsed = layout.parse_journal_key(key)
        if parsed is None or parsed.kind == "epoch":
            return f"{key} is not a journal object"
        void = superseding(markers, parsed.kind, parsed.number, Epoch(parsed.epoch, parsed.token))
        if void is not None:
            return f"{key} was superseded by epoch {void.epoch} ({void.key})"
    return None
