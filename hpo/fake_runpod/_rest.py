"""RunPod REST v2 (``/v2/...``) over the fake account: GPU and CPU pods, the catalogs, pod billing, secrets.

Shapes follow RunPod's ``openapi-v2.json``; statuses follow the failure table
of ``POST /v2/pods`` (422 contract, 400 rule or capacity, 402 balance, 403
pool, 429 rate limit, 5xx transient). A pod's scoped key (``RUNPOD_API_KEY``
inside the pod) may read and delete its own pod and nothing else (so never
the account's secrets). The secrets routes (``/v2/account/secrets``) follow
RunPod's docs, since the copied spec predates them: no answer carries a
secret's value, and a refused body is described without quoting it.
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
    CPU_FLAVORS,
    DEFAULT_DATA_CENTER,
    GPU_TYPES,
    OFFERED_CUDA_VERSIONS,
    SOMETHING_WENT_WRONG,
    CpuFlavor,
    GpuType,
)
from hpo.fake_runpod._contract import violations
from hpo.fake_runpod._errors import Refused
from hpo.fake_runpod._http import authenticate, injected_fault, problem
from hpo.fake_runpod._secrets import SecretView
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
    "cpu_flavor": "cpu.id",
    "vcpu_count": "cpu.vcpuCount",
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
            Route("/v2/catalog/cpus", self.list_cpus, methods=["GET"]),
            Route("/v2/catalog/cpus/{id}", self.get_cpu, methods=["GET"]),
            Route("/v2/billing/pods", self.pod_billing, methods=["GET"]),
            Route("/v2/registries", self.list_registries, methods=["GET"]),
            Route("/v2/registries/{id}", self.get_registry, methods=["GET"]),
            Route("/v2/account/secrets", self.list_secrets, methods=["GET"]),
            Route("/v2/account/secrets", self.create_secret, methods=["POST"]),
            Route("/v2/account/secrets/{id}", self.get_secret, methods=["GET"]),
            Route("/v2/account/secrets/{id}", self.update_secret, methods=["PATCH"]),
            Route("/v2/account/secrets/{id}", self.delete_secret, methods=["DELETE"]),
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
        # A GPU pod has `gpu` and no `cpu`; a CPU pod the other way round (the spec's Pod).
        compute: dict[str, Any]
        if view.cpu_flavor is not None:
            compute = {"cpu": {"id": view.cpu_flavor, "vcpuCount": view.vcpu_count, "memory": view.memory_gb}}
        else:
            compute = {"gpu": {"id": view.gpu_type, "count": view.gpu_count}}
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
            **compute,
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

    async def list_cpus(self, request: Request) -> Response:
        """``GET /v2/catalog/cpus``: CPU flavors, priced per vCPU; stock with ``include=AVAILABILITY&product=...``."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        options = self._cpu_catalog_options(request)
        if isinstance(options, Response):
            return options
        return JSONResponse({"cpus": [self._cpu_type(flavor, *options) for flavor in CPU_FLAVORS.values()]})

    async def get_cpu(self, request: Request) -> Response:
        """``GET /v2/catalog/cpus/{id}``: one CPU flavor, or 404."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        flavor = CPU_FLAVORS.get(request.path_params["id"])
        if flavor is None:
            return problem(404, "CPU type not found")
        options = self._cpu_catalog_options(request)
        if isinstance(options, Response):
            return options
        return JSONResponse(self._cpu_type(flavor, *options))

    def _cpu_catalog_options(self, request: Request) -> tuple[bool, int | None] | Response:
        """``include``, ``product`` (POD, SERVERLESS), ``vcpuCount`` (a power of two); the last two need the first."""
        params = request.query_params
        include = [part for part in params.get("include", "").split(",") if part]
        product = [part for part in params.get("product", "").split(",") if part]
        errors: list[str] = []
        if any(part != "AVAILABILITY" for part in include):
            errors.append("include: must be AVAILABILITY")
        if any(part not in ("POD", "SERVERLESS") for part in product):
            errors.append("product: must be POD or SERVERLESS")
        vcpus: int | None = None
        if "vcpuCount" in params:
            try:
                vcpus = int(params["vcpuCount"])
            except ValueError:
                errors.append("vcpuCount: must be an integer")
            else:
                if vcpus < 2:
                    errors.append("vcpuCount: must be >= 2")
        if errors:
            return problem(422, "Request validation failed.", errors=errors)
        if include and not product:
            return problem(400, "product is required with include=AVAILABILITY")
        if product and not include:
            return problem(400, "product is valid only with include=AVAILABILITY")
        if vcpus is not None and not include:
            return problem(400, "vcpuCount is valid only with include=AVAILABILITY")
        if vcpus is not None and vcpus & (vcpus - 1):
            return problem(400, "vcpuCount: must be a power of two")
        return bool(include), vcpus

    def _cpu_type(self, flavor: CpuFlavor, with_availability: bool, vcpus: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": flavor.id,
            "name": flavor.name,
            "group": flavor.group,
            "vcpu": {"min": flavor.vcpu_min, "max": flavor.vcpu_max},
            "ramGbPerVcpu": flavor.ram_gb_per_vcpu,
            "price": {"securePerVcpu": flavor.secure_per_vcpu, "serverlessPerVcpu": flavor.serverless_per_vcpu},
        }
        if with_availability:
            level = self.account.stock_level(flavor.id, "SECURE").upper()
            if vcpus is not None and flavor.vcpu_problem(vcpus) is not None:
                level = "NONE"  # no pod of that size exists in this flavor
            body["availability"] = level
            if level != "NONE":
                centers = sorted({v.data_center_id for v in self.account.volumes.values()} or {DEFAULT_DATA_CENTER})
                body["dataCenters"] = [{"id": dc, "name": dc, "availability": level} for dc in centers]
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

    # ------------------------------------------------------------------ secrets

    async def list_secrets(self, request: Request) -> Response:
        """``GET /v2/account/secrets``: ``{"secrets": [Secret, ...]}`` by name, values never included."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        return JSONResponse({"secrets": [self._secret(secret) for secret in self.account.secrets.views()]})

    async def create_secret(self, request: Request) -> Response:
        """``POST /v2/account/secrets``: 201 and the Secret; 422 off the contract, 400 a rule broken, 409 name taken."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        body = await _secret_body(request, "CreateSecretRequest")
        if isinstance(body, Response):
            return body
        try:
            secret = self.account.secrets.create(body["name"], body["value"], body.get("description"))
        except Refused as refused:
            return problem(refused.kind.status, refused.text(FIELD_NAMES))
        return JSONResponse(self._secret(secret), status_code=201)

    async def get_secret(self, request: Request) -> Response:
        """``GET /v2/account/secrets/{id}``: the Secret (never its value), or 404."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        try:
            secret = self.account.secrets.get(request.path_params["id"])
        except Refused as refused:
            return problem(refused.kind.status, refused.message)
        return JSONResponse(self._secret(secret))

    async def update_secret(self, request: Request) -> Response:
        """``PATCH /v2/account/secrets/{id}``: rotate the value and/or replace the description; 200 and the Secret."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        body = await _secret_body(request, "UpdateSecretRequest")
        if isinstance(body, Response):
            return body
        try:
            secret = self.account.secrets.update(
                request.path_params["id"], value=body.get("value"), description=body.get("description")
            )
        except Refused as refused:
            return problem(refused.kind.status, refused.text(FIELD_NAMES))
        return JSONResponse(self._secret(secret))

    async def delete_secret(self, request: Request) -> Response:
        """``DELETE /v2/account/secrets/{id}``: 204, or 404 for an unknown id."""
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        try:
            self.account.secrets.delete(request.path_params["id"])
        except Refused as refused:
            return problem(refused.kind.status, refused.message)
        return Response(status_code=204)

    def _secret(self, secret: SecretView) -> dict[str, Any]:
        """A secret in the docs' ``Secret`` shape (no value: RunPod never returns one)."""
        clock = self.account.clock
        return {
            "id": secret.id,
            "name": secret.name,
            "createdAt": clock.iso(secret.created_at),
            "description": secret.description,
            "valueLastUpdatedAt": clock.iso(secret.value_updated_at) if secret.value_updated_at is not None else None,
        }

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
    mounts = body.get("mounts") or {}
    if "persistent" in mounts and "network" in mounts:
        return problem(400, "mounts: at most one of `persistent` or `network` may be set")
    if "network" in mounts and not mounts["network"]:
        return problem(400, "mounts.network: must name one network volume when given")
    if "cpu" in body and "persistent" in mounts:
        # The spec: "CPU pods support container disk and network volumes only".
        return problem(400, "mounts.persistent: invalid for a CPU pod (CPU pods take a network volume only)")
    gpu = body.get("gpu") or {}
    if gpu.get("allowedCudaVersions") and "minCudaVersion" in gpu:
        return problem(400, "gpu.minCudaVersion: mutually exclusive with a non-empty gpu.allowedCudaVersions")
    if "templateId" in body:
        return problem(404, f"templateId: template {body['templateId']!r} not found")
    return None


def _pod_request(body: dict[str, Any]) -> PodRequest:
    """The account's request from a v2 body that passed the schema and :func:`_create_rules` (a GPU or a CPU pod)."""
    gpu = body.get("gpu") or {}
    cpu = body.get("cpu")
    mounts = body.get("mounts") or {}
    network = (mounts.get("network") or [None])[0]
    persistent = mounts.get("persistent")
    mount = network or persistent
    return PodRequest(
        name=body["name"],
        image=body.get("image", ""),
        gpu_type_id=gpu.get("id", ""),
        gpu_count=gpu.get("count", 1) if cpu is None else 0,
        cpu_flavor_id=cpu["id"] if cpu is not None else None,
        vcpu_count=cpu["vcpuCount"] if cpu is not None else 0,
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


async def _secret_body(request: Request, schema: str) -> dict[str, Any] | Response:
    """A secrets request's JSON body checked against ``schema``, or the 400/422 to answer (never quoting a value)."""
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return problem(400, "request body is not valid JSON")
    errors = violations(schema, body, quote_values=False)
    if errors:
        return problem(422, "Request validation failed.", errors=errors)
    assert isinstance(body, dict)  # the schema says an object
    return body


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
