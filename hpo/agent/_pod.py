"""What the agent does differently inside a RunPod pod.

A pod restarts its container whenever the command exits, so an agent whose
attempt is over must never just exit: it terminates its own pod with the
pod-scoped ``RUNPOD_API_KEY`` that RunPod injects, and then waits to be
killed. If it cannot reach the API it still waits (a container that sleeps
bills, but one that exits would run the attempt's objective again; the
controller terminates the pod on its next poll in either case).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from hpo.errors import CloudError

log = logging.getLogger(__name__)


def in_pod(env: Mapping[str, str]) -> bool:
    """True when running in a RunPod pod (RunPod injects ``RUNPOD_POD_ID``)."""
    return bool(env.get("RUNPOD_POD_ID"))


def redirect_output(log_path: Path) -> None:
    """Send this process's stdout and stderr to the attempt's ``log.txt`` on the volume."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def end_pod(
    env: Mapping[str, str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    wait_limit: float = 3600.0,
) -> None:
    """Terminate this pod through RunPod's API, then wait (bounded) to be killed."""
    from hpo.backends.runpod import RunPodApi  # only pods need requests and the client

    pod_id = env["RUNPOD_POD_ID"]
    try:
        api = RunPodApi.from_env(env, attempts=3, timeout=15.0)
        api.terminate_pod(pod_id)
        log.info("attempt over: terminated pod %s", pod_id)
    except (CloudError, OSError) as exc:  # OSError: the network (requests' errors are OSErrors)
        log.warning("attempt over, but pod %s could not terminate itself (%s); waiting to be terminated", pod_id, exc)
    waited = 0.0
    while waited < wait_limit:
        sleep(5.0)
        waited += 5.0
