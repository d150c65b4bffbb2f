"""``hpo stop``: ask the controller that holds a study to stop, through a file it polls.

``hpo stop`` writes ``hpo/<study>/controller/stop.json`` naming the controller
it means: the lease holder's id, and its pod when it runs on one. The
controller reads the file at most every :data:`CHECK_SECONDS` (one small read;
a GET over S3), obeys a request that names it (its lease id, or its pod: a
restarted container of the pod holds the study under a new lease id), deletes
the file and ends its run as Ctrl-C would: running trials go on, warm workers
with nothing to do end, and the next ``hpo run`` adopts what still runs. A
request naming another holder (an earlier controller's, left behind) is
ignored, so a stale file never stops the next run.

The file lies on a volume every pod of the study can write: it is validated
where it is read, and the most a forged one can do is stop the controller,
which a pod that can write the volume could do anyway (by writing the lease).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpo.errors import VolumeError, VolumeNotFoundError
from hpo.layout import StudyLayout
from hpo.lease import Lease, LeaseHolder
from hpo.volume import Volume

log = logging.getLogger(__name__)

CHECK_SECONDS = 10.0
"""The most seconds between two reads of the stop file (the controller's poll may be shorter)."""

_MAX_ID_CHARS = 64

STOPPED_BY_REQUEST = "stopped by `hpo stop`"


@dataclass(frozen=True)
class StopRequest:
    """Which controller ``hpo stop`` asked to stop, and when (epoch seconds)."""

    holder: str
    pod: str | None
    requested_at: float

    def to_json(self) -> dict[str, Any]:
        return {"holder": self.holder, "pod": self.pod, "requested_at": self.requested_at}

    @classmethod
    def from_json(cls, raw: Any) -> StopRequest:
        """The request a stop file holds; ``ValueError`` saying what is wrong with it."""
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        holder, pod, at = raw.get("holder"), raw.get("pod"), raw.get("requested_at")
        if not isinstance(holder, str) or not 0 < len(holder) <= _MAX_ID_CHARS:
            raise ValueError(f"'holder' must be a string of 1 to {_MAX_ID_CHARS} characters")
        if pod is not None and (not isinstance(pod, str) or not 0 < len(pod) <= _MAX_ID_CHARS):
            raise ValueError(f"'pod' must be null or a string of 1 to {_MAX_ID_CHARS} characters")
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise ValueError("'requested_at' must be a finite number")
        return cls(holder, pod, float(at))

    def names(self, lease_id: str, pod: str | None) -> bool:
        """Whether this request is for the controller holding the lease ``lease_id`` (on ``pod``, if any)."""
        return self.holder == lease_id or (pod is not None and self.pod == pod)


def request_stop(volume: Volume, study: str, holder: LeaseHolder, now: float | None = None) -> StopRequest:
    """Ask ``holder`` (the study's controller, from its lease) to stop; it obeys within :data:`CHECK_SECONDS` or so."""
    request = StopRequest(holder.id, getattr(holder, "pod", None), time.time() if now is None else now)
    volume.write_json(StudyLayout(study).controller_stop, request.to_json())
    return request


def withdraw_stop(volume: Volume, study: str) -> None:
    """Remove the stop file (after its controller ended some other way); absent is fine."""
    volume.delete(StudyLayout(study).controller_stop)


class StopWatch:
    """The controller's side: has ``hpo stop`` asked this controller to stop?

    Args:
        volume: The study's volume.
        study: The study's name.
        lease: The controller's lease (its id and pod say which requests are for it).
        every: Most seconds between two reads of the stop file.
        clock: Monotonic seconds, injectable.
    """

    def __init__(
        self,
        volume: Volume,
        study: str,
        lease: Lease,
        *,
        every: float = CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._volume = volume
        self._key = StudyLayout(study).controller_stop
        self._study = study
        self._lease = lease
        self._every = every
        self._clock = clock
        self._next_check: float | None = None

    def requested(self) -> str | None:
        """Why to stop now (a request for this controller was found, and removed), or None.

        Reads the file only when :data:`CHECK_SECONDS` have passed since the
        last read; a failing volume is no request (the next poll's own reads
        meet the outage and say so).
        """
        now = self._clock()
        if self._next_check is not None and now < self._next_check:
            return None
        self._next_check = now + self._every
        try:
            raw = self._volume.read_json(self._key)
        except VolumeNotFoundError:
            return None
        except VolumeError as exc:
            log.debug("study %r: cannot read %s (%s)", self._study, self._key, exc)
            return None
        try:
            request = StopRequest.from_json(raw)
        except ValueError as exc:
            log.warning("study %r: %s: ignoring an invalid stop request (%s)", self._study, self._key, exc)
            return None
        if not request.names(self._lease.id, getattr(self._lease, "pod", None)):
            return None
        try:
            self._volume.delete(self._key)
        except VolumeError as exc:  # it names this controller only: harmless if it stays
            log.warning("study %r: cannot remove %s (%s)", self._study, self._key, exc)
        return STOPPED_BY_REQUEST
