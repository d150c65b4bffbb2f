"""What the agent does differently inside a RunPod pod: the ``runpod`` backend's worker hook.

A pod restarts its container whenever the command exits, so an agent whose
attempt is over must never just exit: it terminates its own pod with the
pod-scoped ``RUNPOD_API_KEY`` that RunPod injects (REST v2 first, then
GraphQL ``podTerminate``: RunPod does not say which the key may call), and
then waits to be killed. If neither works it still waits (a container that
sleeps bills, but one that exits would run the attempt's objective again;
the controller terminates the pod on its next poll, and a spot pod's
``terminateAfter`` ends it even without a controller).

The agent finds this through the registry (:func:`hpo.backends.worker_hook`):
:data:`HOOK` applies where RunPod injected ``RUNPOD_POD_ID``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from hpo.backends._plugin import WorkerHook
from hpo.backends.runpod._api import RunPodApi
from hpo.errors import CloudError

log = logging.getLogger(__name__)


def in_pod(env: Mapping[str, str]) -> bool:
    """True when running in a RunPod pod (RunPod injects ``RUNPOD_POD_ID``)."""
    return bool(env.get("RUNPOD_POD_ID"))


def end_pod(
    env: Mapping[str, str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    wait_limit: float = 3600.0,
) -> None:
    """Terminate this pod through RunPod's API (REST v2, else GraphQL), then wait (bounded) to be killed.

    Whichever call worked is logged in one line; if neither did, one warning
    says why, and the agent waits: the controller's next poll, or RunPod's
    own ``terminateAfter`` deadline on a spot pod, ends the pod instead.
    """
    pod_id = env["RUNPOD_POD_ID"]
    how, failures = terminate_self(env, sleep=sleep)
    if how is not None:
        refused = f" ({'; '.join(failures)})" if failures else ""
        log.info("attempt over: terminated pod %s through %s%s", pod_id, how, refused)
    else:
        log.warning(
            "attempt over, but pod %s could not terminate itself (%s); waiting to be terminated",
            pod_id,
            "; ".join(failures),
        )
    waited = 0.0
    while waited < wait_limit:
        sleep(5.0)
        waited += 5.0


REST_WAY = "REST v2 DELETE /v2/pods/{id}"
GRAPHQL_WAY = "GraphQL podTerminate"


def terminate_self(
    env: Mapping[str, str], *, sleep: Callable[[float], None] = time.sleep
) -> tuple[str | None, list[str]]:
    """Terminate this pod with its pod-scoped key: which way worked (None: neither), and why each earlier one failed.

    RunPod does not document what the pod-scoped ``RUNPOD_API_KEY`` may call:
    REST v2 is tried first (the backend's own path), then GraphQL
    ``podTerminate`` with the same key (the way older runpodctl ended pods
    from inside). A pod already gone counts as terminated on both.
    """
    pod_id = env["RUNPOD_POD_ID"]
    failures: list[str] = []
    try:
        api = RunPodApi.from_env(env, attempts=3, timeout=15.0)
        try:
            api.terminate_pod(pod_id)
        finally:
            api.close()
        return REST_WAY, failures
    except (CloudError, OSError) as exc:  # OSError: the network (requests' errors are OSErrors)
        failures.append(f"REST v2: {exc}")
    try:
        graphql_terminate(env, pod_id, sleep=sleep)
        return GRAPHQL_WAY, failures
    except (SelfTerminateError, OSError) as exc:
        failures.append(f"GraphQL: {exc}")
    return None, failures


class SelfTerminateError(Exception):
    """GraphQL ``podTerminate`` answered, but not with success."""


GRAPHQL_ATTEMPTS = 3


def graphql_terminate(
    env: Mapping[str, str], pod_id: str, *, sleep: Callable[[float], None] = time.sleep, timeout: float = 15.0
) -> None:
    """``mutation { podTerminate(input: {podId: ...}) }`` at ``$RUNPOD_API_BASE_URL/graphql`` with the pod's key.

    Retries a 429, a 5xx or a network error (up to :data:`GRAPHQL_ATTEMPTS`
    tries); RunPod's "pod not found to terminate" means the pod is already
    gone, which is success. Raises :class:`SelfTerminateError` on a refusal.
    """
    key = env.get("RUNPOD_API_KEY", "").strip()
    if not key:
        raise SelfTerminateError("RUNPOD_API_KEY is not set")
    url = (env.get("RUNPOD_API_BASE_URL") or DEFAULT_GRAPHQL_BASE).rstrip("/") + "/graphql"
    query = f"mutation {{ podTerminate(input: {{podId: {json.dumps(pod_id)}}}) }}"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for attempt in range(1, GRAPHQL_ATTEMPTS + 1):
        last = attempt == GRAPHQL_ATTEMPTS
        try:
            response = requests.post(url, json={"query": query}, headers=headers, timeout=timeout)
        except requests.RequestException:
            if last:
                raise
            sleep(float(attempt))
            continue
        if (response.status_code == 429 or response.status_code >= 500) and not last:
            sleep(float(attempt))
            continue
        message = _graphql_error(response)
        if message is None:
            return
        if "not found" in message.lower():
            return  # already terminated
        raise SelfTerminateError(message)


DEFAULT_GRAPHQL_BASE = "https://api.runpod.io"


def _graphql_error(response: Any) -> str | None:
    """The first error of a GraphQL answer (with its HTTP status when not 200), or None on success."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: not JSON"
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        first = errors[0] if isinstance(errors, list) and errors else {}
        text = str(first.get("message", first) if isinstance(first, dict) else first)[:200]
        return text if response.status_code == 200 else f"HTTP {response.status_code}: {text}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    return None


HOOK = WorkerHook(applies=in_pod, end=end_pod, log_to_volume=True)
"""In a pod: the agent logs to the attempt's ``log.txt`` on the volume, and ends the pod when the attempt is over."""
