"""A fake RunPod on loopback: REST v2 and GraphQL on one port, pods as local processes.

For tests (through real HTTP) and for rehearsing a study without a RunPod
account. It follows RunPod as ``/work/shared/RUNPOD.md`` and RunPod's
``openapi-v2.json`` describe it:

* REST v2 (``HPO_RUNPOD_REST_URL`` = ``fake.url``): ``POST/GET /v2/pods``
  (GPU pods, and CPU pods with ``cpu: {id, vcpuCount}``),
  ``GET/DELETE /v2/pods/{id}``, ``POST /v2/pods/{id}/action``,
  ``GET /v2/catalog/gpus[/{id}]``, ``GET /v2/catalog/cpus[/{id}]``,
  ``GET /v2/billing/pods``, the account's secrets
  (``GET/POST /v2/account/secrets``, ``GET/PATCH/DELETE /v2/account/secrets/{id}``);
  RFC 9457 problems; 422 for a body off the contract, 400 for a broken rule or
  no capacity, 402 balance, 403 pool denied or a pod-scoped key out of its
  lane, 409 a secret's name taken, 429, 5xx.
* GraphQL (``RUNPOD_API_BASE_URL`` = ``fake.url``, ``POST /graphql``):
  ``podRentInterruptable`` (spot), ``podFindAndDeployOnDemand``,
  ``podTerminate``, ``podStop``, ``gpuTypes { ... lowestPrice { ... } }``,
  ``pod``, ``myself``; errors as HTTP 200 with ``extensions.code`` RUNPOD.
* Lifecycle on a fake clock: PROVISIONING -> STARTING -> RUNNING, where the
  pod's container (``pod_command``) starts as a local process; a container
  that exits is restarted; each start substitutes ``{{ RUNPOD_SECRET_<name> }}``
  in the pod's env values with the secret's value, in the container's
  environment only (the API keeps showing the placeholder; values are never
  answered or logged); spot preemption sends SIGTERM, then SIGKILL after
  the grace period, and leaves the pod EXITED; terminate SIGKILLs at once.
  Per-second billing draws down the balance; at $0, pods with a network
  volume are stopped and the rest terminated.
* Market and account: on-demand needs one hour of credit (402); the spot
  floor can move on the fake clock per GPU type and data center
  (``bid_floor_swing``), refusing low bids and preempting outbid pods;
  ``GET /v2/registries`` (``registries``), and ``private_images`` that fail
  to pull (ERROR) without a credential; ``terminateAfter`` on spot creates;
  ``graphql_retired`` (410); a pod's key may use REST v2 for its own pod and
  GraphQL only for its own ``podTerminate`` (each refusable by a knob).
* ``/_fake/...`` control routes mirror the Python knobs for curl (the
  account's key and ``Content-Type: application/json`` required).
* Pods are local processes with the user's rights, so the fake guards what
  reaches them: a create's ``env`` may hold only plain names that no shell,
  interpreter or loader acts on (400 otherwise); every request must name the
  fake in ``Host`` (421 otherwise: DNS rebinding); a fake started without a
  key makes a random one.

``python -m hpo.fake_runpod --help`` runs one for a rehearsal.
"""

from __future__ import annotations

from hpo.fake_runpod._catalog import (
    CPU_FLAVORS,
    GPU_TYPES,
    NO_CAPACITY_ON_DEMAND,
    NO_CAPACITY_SPOT,
    POD_NOT_FOUND_TO_TERMINATE,
    SOMETHING_WENT_WRONG,
    CpuFlavor,
    GpuType,
)
from hpo.fake_runpod._processes import INHERITED_ENV_NAMES
from hpo.fake_runpod._state import FAULT_KINDS, FakePodView, PodRequest

# The server's libraries (starlette, uvicorn, graphql-core, jsonschema, referencing) are the `fake` extra
# of pyproject.toml, not the project's own dependencies: without them, say which extra to install.
try:
    from hpo.fake_runpod._server import FakeRunPod
except ModuleNotFoundError as exc:
    if exc.name is None or exc.name.partition(".")[0] == "hpo":
        raise
    raise ModuleNotFoundError(
        f"the fake RunPod API needs runpod-hpo's `fake` extra (no module named {exc.name!r}): "
        "pip install 'runpod-hpo[fake]' (in a checkout: pip install -e '.[fake]', or '.[dev]')",
        name=exc.name,
    ) from None

__all__ = [
    "CPU_FLAVORS",
    "FAULT_KINDS",
    "GPU_TYPES",
    "INHERITED_ENV_NAMES",
    "NO_CAPACITY_ON_DEMAND",
    "NO_CAPACITY_SPOT",
    "POD_NOT_FOUND_TO_TERMINATE",
    "SOMETHING_WENT_WRONG",
    "CpuFlavor",
    "FakePodView",
    "FakeRunPod",
    "GpuType",
    "PodRequest",
]
