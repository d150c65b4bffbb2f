"""One controller per study: a lease file on the volume.

``hpo/<study>/lease.json`` names the holder (a random id, host, pid) and an
expiry that the holder pushes forward every poll cycle. A second controller
that finds a live lease is refused with a message naming the holder; a lease
past its expiry, or held by a dead process on this very host, is stale and is
taken over.

The volume offers no compare-and-swap, so taking a lease is write-then-read-back
after a short settle delay: of two controllers racing for a stale lease, the
one whose write landed last wins, and the other sees a foreign id and backs off.

That is not enough on its own: a controller paused between its read and its
write (a GC pause, a laptop asleep) overwrites a live lease and reads its own id
back, and two controllers hold the study. The journal closes that gap: every
writer takes a newer epoch when it opens the journal (after the lease), and the
one that opened earlier is stopped by :class:`~hpo.errors.JournalFencedError`
at its next flush, before it acts (see :mod:`hpo.journal._backend`). The lease
stays the polite, named refusal of the ordinary case.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from hpo.errors import LeaseError, VolumeError, VolumeNotFoundError
from hpo.layout import StudyLayout
from hpo.volume import Volume


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a study."""

    id: str
    host: str
    pid: int
    expires_at: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _same_host_and_dead(holder: LeaseHolder) -> bool:
    if holder.host != socket.gethostname():
        return False
    try:
        return psutil.Process(holder.pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Lease:
    """The study's lease, held by this process while the controller runs.

    Args:
        volume: The study's volume.
        study: The study's name.
        ttl: Seconds a lease stays live without renewal.
        clock: Wall-clock time (expiry must mean the same on every host).
        sleep: Used for the settle delay; injectable for tests.
        settle: Seconds to wait between writing and reading back the lease.
    """

    def __init__(
        self,
        volume: Volume,
        study: str,
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        settle: float = 0.05,
    ) -> None:
        self._volume = volume
        self._key = StudyLayout(study).lease
        self._study = study
        self._ttl = ttl
        self._clock = clock
        self._sleep = sleep
        self._settle = settle
        self.id = uuid.uuid4().hex
        self.held = False

    def current(self) -> LeaseHolder | None:
        """The lease as recorded on the volume, or None."""
        try:
            raw = self._volume.read_json(self._key)
            return LeaseHolder(str(raw["id"]), str(raw["host"]), int(raw["pid"]), float(raw["expires_at"]))
        except VolumeNotFoundError:
            return None
        except (VolumeError, KeyError, TypeError, ValueError):
            return None  # an unreadable lease protects nothing; treat it as absent

    def acquire(self) -> None:
        """Take the lease, or raise :class:`LeaseError` naming the live holder."""
        holder = self.current()
        if holder and holder.id != self.id and holder.expires_at > self._clock() and not _same_host_and_dead(holder):
            raise LeaseError(
                f"study {self._study!r} is held by another controller ({holder.describe()}, "
                f"lease expires in {holder.expires_at - self._clock():.0f}s); stop it first, "
                "or wait for its lease to expire"
            )
        self._write()
        self._sleep(self._settle)
        now = self.current()
        if now is None or now.id != self.id:
            who = now.describe() if now else "someone"
            raise LeaseError(f"study {self._study!r}: lost the race for its lease to {who}")
        self.held = True

    def renew(self) -> None:
        """Push the expiry forward; raise :class:`LeaseError` if another controller took over."""
        holder = self.current()
        if holder is not None and holder.id != self.id:
            self.held = False
            raise LeaseError(f"study {self._study!r}: the lease was taken over by {holder.describe()}")
        self._write()

    def release(self) -> None:
        """Give the lease up (only if we still hold it)."""
        if not self.held:
            return
        holder = self.current()
        if holder is not None and holder.id == self.id:
            self._volume.delete(self._key)
        self.held = False

    def _write(self) -> None:
        self._volume.write_json(
            self._key,
            {"id": self.id, "host": socket.gethostname(), "pid": os.getpid(), "expires_at": self._clock() + self._ttl},
        )
