"""What the controller's own pod has cost the study so far, from RunPod's figures for that pod.

A remote controller's pod bills the study like its trials' pods do, so its
cost counts in the study's spend and budget (:class:`~hpo.cost.ControllerCost`,
kept by the controller's cost keeper). The pod's price and creation time come
from RunPod (``GET /v2/pods/{id}``), the time from RunPod's clock as the
controller reads it from all the study's pods (the controller pod's own
uptime restarts with its container), the pod re-read at most every :data:`REFRESH_SECONDS`; between two
reads the last figure stands, so the record lags the bill by at most that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from hpo.backends.runpod._api import RunPodApi
from hpo.cost import ControllerCost
from hpo.errors import CloudError

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0
"""Most seconds between two reads of the controller's pod (one ``GET /v2/pods/{id}``)."""


class PodMeter:
    """Called once per poll by the controller with RunPod's time: the cost of pod ``pod_id`` so far, or None.

    None until RunPod has shown the pod's price and creation time.

    Args:
        api: A client with a key that may read the pod.
        pod_id: The controller's pod.
        every: Most seconds between two reads of the pod.
        clock: Monotonic seconds, injectable.
    """

    def __init__(
        self,
        api: RunPodApi,
        pod_id: str,
        *,
        every: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._pod_id = pod_id
        self._every = every
        self._clock = clock
        self._rate: float | None = None
        self._started: float | None = None
        self._next_read: float | None = None
        self._record: ControllerCost | None = None

    def __call__(self, provider_now: float) -> ControllerCost | None:
        now = self._clock()
        if self._next_read is None or now >= self._next_read:
            self._next_read = now + self._every
            self._read_pod()
        if self._rate is None or self._started is None:
            return self._record
        seconds = max(0.0, provider_now - self._started)
        if self._record is not None and seconds <= self._record.seconds:
            return self._record  # never count backwards
        rate = self._rate
        self._record = ControllerCost(
            pod=self._pod_id,
            usd=round(rate * seconds / 3600.0, 6),
            seconds=round(seconds, 3),
            rate_per_hour=rate,
            started_at=self._started,
            billed=False,
        )
        return self._record

    def _read_pod(self) -> None:
        """Take the pod's price and creation time from RunPod (kept as they were when it cannot answer)."""
        try:
            pod = self._api.get_pod(self._pod_id)
        except CloudError as exc:  # the controller's own listing meets the outage and says so
            log.debug("cannot read the controller's pod %s (%s)", self._pod_id, exc)
            return
        if pod is not None and pod.cost_per_hr is not None and pod.created_at is not None:
            self._rate, self._started = pod.cost_per_hr, pod.created_at.timestamp()
