"""RunPod REST v2 (``/v2/...``) over the fake account: pods, the GPU catalog, pod billing.

Shapes follow RunPod's ``openapi-v2.json``; statuses follow the failure table
of ``POST /v2/pods`` (422 contract, 400 rule or capacity, 402 balance, 403
pool, 429 rate limit, 5xx transient). A pod's scoped key (``RUNPOD_API_KEY``
inside the pod) may read and delete its own pod and nothing else.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hpo.fake_runpod import _billing
from hpo.fake_runpod._catalog import (
    DEFAULT_DATA_CENTER,
    GPU_TYPES,
    OFFERED_CUDA_VERSIONS,
    SOMETHING_WENT_WRONG,
    GpuType,
)
from hpo.fake_runpod._contract import violations
from hpo.fake_runpod._errors import Refused
from hpo.fake_runpod._http import authenticate, injected_fault, problem
from hpo.fake_runpod._state import (
    ACTIVE_STATUSES,
    RUNNING,
    Account,
    FakePodView,
    PodRequest,
    Principal,
    allowed_actions,
)

# How REST v2 spells the fields the account's refusals name.
FIELD_NAMES: dict[str, str] = {
    "gpu_type": "gpu.id",
    "gpu_count": "gpu.count",
    "image": "image",
    "volume": "mounts.network[0].volumeId",
    "data_center": "dataCenterIds",
    "cloud": "cloud",
    "cuda": "gpu.allowedCudaVersions",
    "env": "env",
    "registry": "registry",
}


class RestApi:
    """The ``/v2`` routes, bound to one account."""

    def __init__(self, account: Account) -> None:
        self.account = account

    def routes(self) -> list[Route]:
        """Starlette routes for every v2 path the fake serves."""
        return [
            Route("/v2/pods", self.list_pods, methods=["GET"]),
            Route("/v2/pods", self.create_pod, methods=["POST"]),
            Route("/v2/pods/{id}", self.get_pod, methods=["GET"]),
            Route("/v2/pods/{id}", self.delete_pod, methods=["DELETE"]),
            Route("/v2/pods/{id}/action", self.pod_action, methods=["POST"]),
            Route("/v2/catalog/gpus", self.list_gpus, methods=["GET"]),
            Route("/v2/catalog/gpus/{id}", self.get_gpu, methods=["GET"]),
            Route("/v2/billing/pods", self.pod_billing, methods=["GET"]),
            Route("/v2/registries", self.list_registries, methods=["GET"]),
            Route("/v2/registries/{id}", self.get_registry, methods=["GET"]),
        ]

    # ------------------------------------------------------------------ gate

    def _gate(self, request: Request, *, own_pod: str | None = None) -> Principal | Response:
        """Authenticate, then apply pending faults; pod keys pass only for their own pod (``own_pod``)."""
        principal = authenticate(self.account, request)
        if isinstance(principal, Response):
            return principal
        if not principal.is_account and (principal.pod_id != own_pod or not self.account.pod_key_rest):
            return problem(403, "access denied")
        # Injected faults hit account-key requests only, so a test that arms one
        # knows the controller meets it, not some pod calling home first.
        fault = injected_fault(self.account) if principal.is_account else None
        if fault is not None:
            return fault
        self.account.tick()
        return principal

    # ------------------------------------------------------------------ pods

    async def list_pods(self, request: Request) -> Response:
        """``GET /v2/pods``: every pod not terminated (terminated pods vanish, as on RunPod)."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        if self.account.take_fault("list_error"):
            return problem(500, SOMETHING_WENT_WRONG)
        return JSONResponse({"pods": [self.render(view) for view in self.account.pods()]})

    async def create_pod(self, request: Request) -> Response:
        """``POST /v2/pods``: 422 for a body off the contract, 400/402/403 for refusals, else 201 and the pod."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return problem(400, "request body is not valid JSON")
        errors = violations("CreatePodRequest", body)
        if errors:
            return problem(422, "Request validation failed.", errors=errors)
        rule = _create_rules(body)
        if rule is not None:
            return rule
        try:
            view = self.account.create(_pod_request(body))
        except Refused as refused:
            return problem(refused.kind.status, refused.text(FIELD_NAMES))
        if self.account.take_fault("create_then_500"):
            # RunPod's create-then-500 bug: the pod exists and bills, the caller hears 500.
            return problem(500, SOMETHING_WENT_WRONG)
        return JSONResponse(self.render(view), status_code=201)

    async def get_pod(self, request: Request) -> Response:
        """``GET /v2/pods/{id}``: the pod, or 404 once it is terminated or if it never existed."""
        pod_id = request.path_params["id"]
        gate = self._gate(request, own_pod=pod_id)
        if isinstance(gate, Response):
            return gate
        view = self.account.get(pod_id)
        if view is None:
            return problem(404, "pod not found")
        return JSONResponse(self.render(view))

    async def delete_pod(self, request: Request) -> Response:
        """``DELETE /v2/pods/{id}``: terminate (SIGKILL the container, stop billing); 204, or 404."""
        pod_id = request.path_params["id"]
        gate = self._gate(request, own_pod=pod_id)
        if isinstance(gate, Response):
            return gate
        try:
            self.account.terminate(pod_id)
        except Refused as refused:
            return problem(refused.kind.status, refused.message)
        return Response(status_code=204)

    async def pod_action(self, request: Request) -> Response:
        """``POST /v2/pods/{id}/action``: start/stop/restart answer 200 and the pod, terminate 204; 409 if not allowed now."""
        pod_id = request.path_params["id"]
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return problem(400, "request body is not valid JSON")
        errors = violations("PodActionRequest", body)
        if errors:
            return problem(422, "Request validation failed.", errors=errors)
        try:
            view = self.account.action(pod_id, body["action"])
        except Refused as refused:
            return problem(refused.kind.status, refused.message)
        if body["action"] == "terminate":
            return Response(status_code=204)
        return JSONResponse(self.render(view))

    def render(self, view: FakePodView) -> dict[str, Any]:
        """A pod in v2's ``Pod`` shape."""
        req = view.request
        clock = self.account.clock
        now = clock.now()
        mounts: dict[str, Any] = {}
        if req.network_volume_id is not None:
            mounts["network"] = [{"volumeId": req.network_volume_id, "path": req.mount_path or "/workspace"}]
        elif req.persistent_size is not None:
            mounts["persistent"] = {"size": req.persistent_size, "path": req.mount_path or "/workspace"}
        runtime = None
        if view.status == RUNNING:
            uptime = int(now - view.container_started_at) if view.container_started_at is not None else 0
            runtime = {
                "uptime": max(0, uptime),
                "gpus": [{"util": 0, "memoryUtil": 0} for _ in range(view.gpu_count)],
                "ports": [],
            }
        username = view.host_id
        return {
            "id": view.id,
            "name": view.name,
            "image": req.image,
            "args": req.args,
            "disk": req.disk,
            "ports": list(req.ports),
            "env": dict(view.env),
            "registry": req.registry,
            "status": view.status,
            "actions": allowed_actions(view.status),
            "mounts": mounts,
            "gpu": {"id": view.gpu_type, "count": view.gpu_count},
            "cloud": view.cloud,
            "dataCenterId": view.data_center_id,
            "cudaVersion": view.cuda_version,
            "ssh": {
                "proxy": {
                    "host": "ssh.runpod.io",
                    "port": 22,
                    "username": username,
                    "command": f"ssh {username}@ssh.runpod.io",
                },
                "direct": None,
            },
            "template": None,
            # The spec: "Current cost in USD per hour (0.0 when EXITED or TERMINATED)".
            "cost": view.cost_per_hr if view.status in ACTIVE_STATUSES else 0.0,
            "locked": False,
            "globalNetworking": {"enabled": False},
            "runtime": runtime,
            "createdAt": clock.iso(view.created_at),
            "startedAt": clock.iso(view.started_at) if view.started_at is not None else None,
        }

    # ------------------------------------------------------------------ catalog

    async def list_gpus(self, request: Request) -> Response:
        """``GET /v2/catalog/gpus``: GPU types with prices; stock with ``include=AVAILABILITY&product=POD``."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        options = self._catalog_options(request)
        if isinstance(options, Response):
            return options
        gpus = [self._gpu_type(gpu, *options) for gpu in sorted(GPU_TYPES.values(), key=lambda g: g.id)]
        return JSONResponse({"gpus": gpus})

    async def get_gpu(self, request: Request) -> Response:
        """``GET /v2/catalog/gpus/{id}``: one GPU type, or 404."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        gpu = GPU_TYPES.get(request.path_params["id"])
        if gpu is None:
            return problem(404, "GPU type not found")
        options = self._catalog_options(request)
        if isinstance(options, Response):
            return options
        return JSONResponse(self._gpu_type(gpu, *options))

    def _catalog_options(self, request: Request) -> tuple[bool, str] | Response:
        params = request.query_params
        include = [part for part in params.get("include", "").split(",") if part]
        product = [part for part in params.get("product", "").split(",") if part]
        if any(part != "AVAILABILITY" for part in include):
            return problem(422, "Request validation failed.", errors=["include: must be AVAILABILITY"])
        if include and not product:
            return problem(400, "product is required with include=AVAILABILITY")
        if product and not include:
            return problem(400, "product is valid only with include=AVAILABILITY")
        cloud = params.get("cloud", "SECURE")
        if cloud not in ("SECURE", "COMMUNITY"):
            return problem(422, "Request validation failed.", errors=["cloud: must be SECURE or COMMUNITY"])
        return bool(include), cloud

    def _gpu_type(self, gpu: GpuType, with_availability: bool, cloud: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": gpu.id,
            "name": gpu.display_name,
            "pool": None,
            "manufacturer": gpu.manufacturer,
            "memory": gpu.memory_gb,
            "secure": gpu.secure is not None,
            "community": gpu.community is not None,
            "price": {"secure": gpu.secure or 0.0, "community": gpu.community or 0.0},
            "maxCount": {
                "secure": gpu.max_count if gpu.secure is not None else 0,
                "community": gpu.max_count if gpu.community is not None else 0,
            },
        }
        if with_availability:
            level = self.account.stock_level(gpu.id, cloud).upper()
            body["availability"] = level
            if level != "NONE":
                centers = sorted({v.data_center_id for v in self.account.volumes.values()} or {DEFAULT_DATA_CENTER})
                body["dataCenters"] = [{"id": dc, "name": dc, "availability": level} for dc in centers]
            if gpu.manufacturer == "NVIDIA":
                body["cudaVersions"] = [{"version": v, "available": level != "NONE"} for v in OFFERED_CUDA_VERSIONS]
        return body

    # ------------------------------------------------------------------ registries

    async def list_registries(self, request: Request) -> Response:
        """``GET /v2/registries``: the account's container registry credentials, ``{id, name}`` only."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        registries = [{"id": reg_id, "name": name} for reg_id, name in self.account.registry_list()]
        return JSONResponse({"registries": registries})

    async def get_registry(self, request: Request) -> Response:
        """``GET /v2/registries/{id}``: one credential, or 404."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        wanted = request.path_params["id"]
        for reg_id, name in self.account.registry_list():
            if reg_id == wanted:
                return JSONResponse({"id": reg_id, "name": name})
        return problem(404, "registry not found")

    # ------------------------------------------------------------------ billing

    async def pod_billing(self, request: Request) -> Response:
        """``GET /v2/billing/pods``: per-pod charges in ``bucketSize`` buckets over the (snapped) window."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        params = request.query_params
        errors: list[str] = []
        bucket = params.get("bucketSize", "day")
        if bucket not in _billing.BUCKET_SIZES:
            errors.append(f"bucketSize: must be one of {', '.join(_billing.BUCKET_SIZES)}")
        start = _parse_time(params.get("startTime"), "startTime", errors)
        end = _parse_time(params.get("endTime"), "endTime", errors)
        last_n = None
        if "lastN" in params:
            try:
                last_n = int(params["lastN"])
                if last_n < 1:
                    raise ValueError
            except ValueError:
                errors.append("lastN: must be an integer >= 1")
        if errors:
            return problem(422, "Request validation failed.", errors=errors)
        if last_n is not None and (start is not None or end is not None):
            return problem(400, "lastN is mutually exclusive with startTime/endTime")
        clock = self.account.clock
        now = clock.now()
        query = _billing.resolve_query(
            now=clock.to_datetime(now),
            start=start,
            end=end,
            bucket_size=bucket,
            last_n=last_n,
            pod_id=params.get("podId"),
        )
        if query.end <= query.start:
            return problem(400, "endTime must be after startTime")
        pods = self.account.pods(include_terminated=True)
        return JSONResponse(_billing.report(query, pods, clock, now))


def _create_rules(body: dict[str, Any]) -> Response | None:
    """The handler-level rules of ``CreatePodRequest`` (400s), checked after the schema passed."""
    if ("gpu" in body) == ("cpu" in body):
        return problem(400, "gpu: exactly one of `gpu` or `cpu` must be set")
    if "cpu" in body:
        return problem(400, "cpu: CPU pods are not offered by the fake RunPod server; request a `gpu`")
    mounts = body.get("mounts") or {}
    if "persistent" in mounts and "network" in mounts:
        return problem(400, "mounts: at most one of `persistent` or `network` may be set")
    if "network" in mounts and not mounts["network"]:
        return problem(400, "mounts.network: must name one network volume when given")
    gpu = body["gpu"]
    if gpu.get("allowedCudaVersions") and "minCudaVersion" in gpu:
        return problem(400, "gpu.minCudaVersion: mutually exclusive with a non-empty gpu.allowedCudaVersions")
    if "templateId" in body:
        return problem(404, f"templateId: template {body['templateId']!r} not found")
    return None


def _pod_request(body: dict[str, Any]) -> PodRequest:
    gpu = body["gpu"]
    mounts = body.get("mounts") or {}
    network = (mounts.get("network") or [None])[0]
    persistent = mounts.get("persistent")
    mount = network or persistent
    return PodRequest(
        name=body["name"],
        image=body.get("image", ""),
        gpu_type_id=gpu["id"],
        gpu_count=gpu.get("count", 1),
        cloud=body.get("cloud", "SECURE"),
        env=dict(body.get("env") or {}),
        args=body.get("args", ""),
        disk=body.get("disk", 50),
        ports=tuple(body.get("ports") or ()),
        registry=body.get("registry"),
        data_center_ids=tuple(body.get("dataCenterIds") or ()),
        network_volume_id=network["volumeId"] if network else None,
        persistent_size=persistent["size"] if persistent else None,
        mount_path=mount["path"] if mount else None,
        allowed_cuda_versions=tuple(gpu.get("allowedCudaVersions") or ()),
        min_cuda_version=gpu.get("minCudaVersion"),
    )


def _parse_time(value: str | None, name: str, errors: list[str]) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        errors.append(f"{name}: not an RFC 3339 date-time: {value!r}")
        return None
    # RFC 3339 always carries an offset; a bare time is read as UTC, never as the server's local time.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
