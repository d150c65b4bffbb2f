"""``hpo stop``'s side: ask the study's controller to stop, wait for it, and end its pod if it does not end in time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from hpo.backends.runpod._backend import RunPodBackend
from hpo.controller import request_stop, withdraw_stop
from hpo.lease import Lease
from hpo.volume import Volume

STOPPED = "stopped"
TERMINATED = "terminated"
NONE_RUNNING = "none running"
TIMED_OUT = "timed out"

_LIVE = ("provisioning", "starting", "running")


@dataclass(frozen=True)
class StopOutcome:
    """How ``hpo stop`` went: ``how`` is one of the constants above; ``holder`` says which controller."""

    how: str
    holder: str | None = None
    pod: str | None = None


def stop_controller(
    volume: Volume,
    study: str,
    backend: RunPodBackend | None,
    *,
    timeout: float,
    say: Callable[[str], None] = lambda text: None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 2.0,
) -> StopOutcome:
    """Ask the controller holding ``study`` to stop; wait up to ``timeout`` s for it to end; then end its pod.

    A controller on a pod has ended when its pod is gone (it terminates
    itself); one elsewhere, when its lease is released or has lapsed. A
    controller pod alive without a live lease (starting, or failing to start)
    is terminated at once. ``backend`` is None for a study not on RunPod.
    """
    lease = Lease(volume, study)
    holder = lease.current()
    if holder is None or holder.expires_at <= wall_clock():
        found = backend.controller_pods() if backend is not None else []
        for pod in found:
            backend.terminate_pod(pod.id)  # type: ignore[union-attr]
        if found:
            return StopOutcome(TERMINATED, f"controller pod {found[0].id} (it held no lease)", found[0].id)
        return StopOutcome(NONE_RUNNING)
    pod_id: str | None = getattr(holder, "pod", None)
    request_stop(volume, study, holder)
    say(f"asked {holder.describe()} to stop; waiting up to {timeout:.0f}s for it to end")
    deadline = clock() + timeout
    while clock() < deadline:
        if _ended(lease, holder.id, pod_id, backend, wall_clock):
            withdraw_stop(volume, study)  # the controller removed it; a request it never saw must not linger
            return StopOutcome(STOPPED, holder.describe(), pod_id)
        sleep(interval)
    withdraw_stop(volume, study)
    if pod_id is not None and backend is not None:
        backend.terminate_pod(pod_id)
        return StopOutcome(TERMINATED, holder.describe(), pod_id)
    return StopOutcome(TIMED_OUT, holder.describe(), pod_id)


def _ended(
    lease: Lease, holder_id: str, pod: str | None, backend: RunPodBackend | None, wall_clock: Callable[[], float]
) -> bool:
    if pod is not None and backend is not None:
        found = backend.controller_pod(pod)
        return found is None or found.status not in _LIVE
    now = lease.current()
    return now is None or now.id != holder_id or now.expires_at <= wall_clock()
