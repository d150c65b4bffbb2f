"""One controller per study: a lease file on the volume.

``hpo/<study>/lease.json`` names the holder (a random id, host, pid) and an
expiry that the holder pushes forward every :data:`RENEW_FRACTION` of its TTL
(a poll cycle calls :meth:`Lease.renew`, which reads and writes the file only
when a renewal is due: over S3 a GET and a PUT every 20 s of a 60 s TTL, not
every poll). A second controller that finds a live lease is refused with a
message naming the holder; a lease past its expiry, or held by a dead process
on this very host, is stale and is taken over.

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

Renewing at a third of the TTL keeps two thirds of it in hand: a live
controller's lease lapses only if one poll cycle stalls for more than two
thirds of the TTL (40 s of 60; renewing every poll allowed all 60), and a
controller whose lease was taken over learns of it at its next renewal, at
most a third of the TTL later. Meanwhile the journal's fence, checked at every
flush whether a renewal was due or not, keeps it from acting: the new holder
took a newer epoch when it opened the journal, so the old one's next flush
raises before its next act. Deciding who may start is all the lease ever did.

The lease file is on a volume every pod can write, so what it claims is
bounded where it is read: an expiry that is not a finite number, or lies more
than :data:`MAX_LEASE_AHEAD` seconds beyond a fresh lease's, a pid that is no
pid, an id or host that is not a short string, make the lease invalid: it is
treated as stale (taken over) with a warning naming the file, never as a
300-digit countdown. Only what a lease may claim is checked here; how it is
taken (write, settle, read back) and the epoch fencing behind it are unchanged.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from hpo.errors import LeaseError, VolumeError, VolumeNotFoundError
from hpo.layout import StudyLayout
from hpo.volume import Volume

log = logging.getLogger(__name__)

#: A lease is renewed once this fraction of its TTL has passed since it was last written.
RENEW_FRACTION = 1 / 3
#: How far beyond a fresh lease's expiry (now + TTL) a lease may claim to run (clock skew between hosts included).
MAX_LEASE_AHEAD = 86_400.0
#: The largest pid a lease may name (no system hands out larger ones).
MAX_PID = 2**32
#: The longest holder id and host name a lease may carry.
MAX_ID_CHARS = 64
MAX_HOST_CHARS = 255


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a study."""

    id: str
    host: str
    pid: int
    expires_at: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def parse_holder(raw: Any, now: float, ttl: float) -> LeaseHolder:
    """A lease file's content as a :class:`LeaseHolder`; ``ValueError`` with a short reason if it claims too much.

    Args:
        raw: The parsed JSON.
        now: Wall-clock time now.
        ttl: This controller's lease TTL: a lease may claim at most ``now + ttl + MAX_LEASE_AHEAD``.
    """
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    holder_id, host, pid, expires = raw.get("id"), raw.get("host"), raw.get("pid"), raw.get("expires_at")
    if not isinstance(holder_id, str) or not 0 < len(holder_id) <= MAX_ID_CHARS:
        raise ValueError(f"'id' must be a string of 1 to {MAX_ID_CHARS} characters")
    if not isinstance(host, str) or len(host) > MAX_HOST_CHARS:
        raise ValueError(f"'host' must be a string of at most {MAX_HOST_CHARS} characters")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= MAX_PID:
        raise ValueError(f"'pid' must be an integer from 1 to {MAX_PID}")
    if not isinstance(expires, (int, float)) or isinstance(expires, bool) or not math.isfinite(expires):
        raise ValueError("'expires_at' must be a finite number")
    limit = now + ttl + MAX_LEASE_AHEAD
    if expires > limit:
        raise ValueError(f"'expires_at' is {human_seconds(expires - now)} away, more than a lease can claim")
    return LeaseHolder(holder_id, host, pid, float(expires))


def human_seconds(seconds: float) -> str:
    """A duration as people say it: ``45s``, ``3m 20s``, ``2h 5m``, ``3d 4h`` (``ages`` beyond a thousand days)."""
    if not math.isfinite(seconds) or seconds >= 1000 * 86_400:
        return "ages"
    seconds = max(0, round(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


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
        self._written_at: float | None = None  # when this process last wrote the lease (its clock)

    def current(self) -> LeaseHolder | None:
        """The lease as recorded on the volume, or None."""
        try:
            raw = self._volume.read_json(self._key)
            return parse_holder(raw, self._clock(), self._ttl)
        except VolumeNotFoundError:
            return None
        except (VolumeError, ValueError) as exc:
            # An unreadable or overclaiming lease protects nothing: treat it as stale (absent), and say so.
            log.warning("study %r: %s: ignoring an invalid lease (%s)", self._study, self._key, exc)
            return None

    def acquire(self) -> None:
        """Take the lease, or raise :class:`LeaseError` naming the live holder."""
        holder = self.current()
        if holder and holder.id != self.id and holder.expires_at > self._clock() and not _same_host_and_dead(holder):
            raise LeaseError(
                f"study {self._study!r} is held by another controller ({holder.describe()}, "
                f"lease expires in {human_seconds(holder.expires_at - self._clock())}); stop it first, "
                f"or wait for its lease to expire; if that controller is gone for good, delete "
                f"{self._key} on the volume ({self._volume.url})"
            )
        self._write()
        self._sleep(self._settle)
        now = self.current()
        if now is None or now.id != self.id:
            who = now.describe() if now else "someone"
            raise LeaseError(f"study {self._study!r}: lost the race for its lease to {who}")
        self.held = True

    def renew(self, *, force: bool = False) -> None:
        """Push the expiry forward when a renewal is due; raise :class:`LeaseError` if another controller took over.

        A renewal is due once :data:`RENEW_FRACTION` of the TTL has passed since
        this process last wrote the lease (or its clock went back); before that
        it costs nothing, so a poll cycle may call it every time. ``force``
        renews now.
        """
        now = self._clock()
        last = self._written_at
        if not force and last is not None and 0 <= now - last < self._ttl * RENEW_FRACTION:
            return
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
        now = self._clock()
        self._volume.write_json(
            self._key,
            {"id": self.id, "host": socket.gethostname(), "pid": os.getpid(), "expires_at": now + self._ttl},
        )
        self._written_at = now
