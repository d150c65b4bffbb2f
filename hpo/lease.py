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

A controller may run on a RunPod pod of its own (``hpo run --remote``); its
lease then names the pod (``pod``), so that a refusal says which pod holds the
study and how to stop it (``hpo stop --study NAME``), and ``hpo status`` says
where the controller runs. Every lease also records when its holder first took
it (``started_at``, kept across renewals): the controller's uptime. Leases
written before either existed still parse (both None).

The pod's id is what makes a same-pod lease stale at once: RunPod restarts a
pod's container in place (same pod id, a fresh process), so a lease that names
this very pod was written by a process that is gone, as surely as a dead pid
on this host (which the pid check cannot tell there: a fresh container hands
out the same pids, and its host name is the pod's as before). Only a
controller started by the pod's own entry point (one per container) passes
``pod``; a second process on the same pod passing it would take a live lease
over (the journal's fence would still stop the older one).
"""

from __future__ import annotations

import logging
import math
import os
import re
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
#: A RunPod pod id as a lease may name it: letters, digits, ``_`` or ``-``, at most 64 characters.
POD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a study.

    Attributes:
        id: The holder's random id (one per :class:`Lease` object).
        host: Its host name.
        pid: Its process id on that host.
        expires_at: Wall-clock time the lease runs out unless renewed.
        pod: The RunPod pod it runs on, for a controller running on a pod of its own (None: elsewhere,
            or a lease written before leases named pods).
        started_at: Wall-clock time it first took the lease (None: a lease written before leases said so).
    """

    id: str
    host: str
    pid: int
    expires_at: float
    pod: str | None = None
    started_at: float | None = None

    def describe(self) -> str:
        if self.pod is not None:
            return f"the remote controller on pod {self.pod}"
        return f"pid {self.pid} on {self.host}"

    def live(self, now: float) -> bool:
        """Whether the holder may still be running: its lease has not expired, and it is no dead process on this host."""
        return self.expires_at > now and not _same_host_and_dead(self)

    def uptime(self, now: float) -> float | None:
        """Seconds since it took the lease (never below zero), or None if its lease does not say."""
        return None if self.started_at is None else max(0.0, now - self.started_at)


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
    pod, started = raw.get("pod"), raw.get("started_at")
    if pod is not None and (not isinstance(pod, str) or not POD_ID.fullmatch(pod)):
        raise ValueError("'pod' must be a pod id: 1 to 64 letters, digits, '_' or '-'")
    if started is not None:
        if not isinstance(started, (int, float)) or isinstance(started, bool) or not math.isfinite(started):
            raise ValueError("'started_at' must be a finite number")
        if started > now + MAX_LEASE_AHEAD:
            raise ValueError(f"'started_at' is {human_seconds(started - now)} in the future, more than clocks differ by")
        started = float(started)
    return LeaseHolder(holder_id, host, pid, float(expires), pod, started)


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
        pod: The RunPod pod this controller runs on (its own pod's id), recorded in the lease;
            None for a controller elsewhere (a laptop, a workstation). ``ValueError`` if it is
            no pod id (:data:`POD_ID`): every reader would find the lease invalid.
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
        pod: str | None = None,
    ) -> None:
        if pod is not None and not POD_ID.fullmatch(pod):
            raise ValueError(f"not a pod id: {pod!r}")
        self._volume = volume
        self._key = StudyLayout(study).lease
        self._study = study
        self._ttl = ttl
        self._clock = clock
        self._sleep = sleep
        self._settle = settle
        self.id = uuid.uuid4().hex
        self.pod = pod
        self.held = False
        self._written_at: float | None = None  # when this process last wrote the lease (its clock)
        self._started_at: float | None = None  # when it first took the lease: written with every renewal

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
        """Take the lease, or raise :class:`LeaseError` naming the live holder.

        A lease that names this controller's own pod is stale whatever its
        expiry: RunPod restarted the pod's container, and the process that
        wrote it is gone (see the module's notes).
        """
        holder = self.current()
        if holder and holder.id != self.id and holder.live(self._clock()) and not self._same_pod(holder):
            stop = f"`hpo stop --study {self._study}` stops it" if holder.pod is not None else "stop it first"
            raise LeaseError(
                f"study {self._study!r} is held by another controller ({holder.describe()}, "
                f"lease expires in {human_seconds(holder.expires_at - self._clock())}); {stop}, "
                f"or wait for its lease to expire; if that controller is gone for good, delete "
                f"{self._key} on the volume ({self._volume.url})"
            )
        if holder and holder.id != self.id and self._same_pod(holder) and holder.expires_at > self._clock():
            log.info("study %r: taking over the lease of an earlier container of this pod (%s)", self._study, self.pod)
        if not self.held:
            self._started_at = self._clock()
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

    def _same_pod(self, holder: LeaseHolder) -> bool:
        """Whether ``holder`` ran on this controller's own pod (an earlier container of it: gone)."""
        return self.pod is not None and holder.pod == self.pod

    def _write(self) -> None:
        now = self._clock()
        if self._started_at is None:
            self._started_at = now
        record: dict[str, Any] = {
            "id": self.id, "host": socket.gethostname(), "pid": os.getpid(), "expires_at": now + self._ttl,
            "started_at": self._started_at,
        }
        if self.pod is not None:
            record["pod"] = self.pod
        self._volume.write_json(self._key, record)
        self._written_at = now
