"""RunPod's GraphQL API (``POST /graphql``) over the fake account: spot pods, GPU prices, terminate.

GraphQL is RunPod's only surface for spot (``podRentInterruptable``) and spot
prices (``gpuTypes``). The schema below is the subset the runpod SDK, SkyPilot
and dstack query, with RunPod's names. Like RunPod, the fake answers client
errors with HTTP 200 and ``{"errors": [{"message", "path", "extensions":
{"code": "RUNPOD"}}], "data": {"<field>": null}}``; a bad key is HTTP 401; a
query that does not parse or validate is HTTP 400 (Apollo's behaviour).
Spot pods live in the same account as REST ones, so ``GET /v2/pods`` lists them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    build_schema,
    execute_sync,
    parse,
    validate,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hpo.fake_runpod._catalog import (
    GPU_TYPES,
    MEMORY_GB_PER_GPU,
    POD_NOT_FOUND_TO_TERMINATE,
    SOMETHING_WENT_WRONG,
    VCPUS_PER_GPU,
    GpuType,
)
from hpo.fake_runpod._errors import Refusal, Refused
from hpo.fake_runpod._http import RETRY_AFTER_SECONDS, bearer_key
from hpo.fake_runpod._state import ACTIVE_STATUSES, ERROR, RUNNING, Account, FakePodView, PodRequest, Principal

SDL = """
scalar Void

enum CloudTypeEnum { ALL SECURE COMMUNITY }
enum PodStatus { CREATED RUNNING RESTARTING EXITED PAUSED DEAD TERMINATED }

input EnvironmentVariableInput { key: String!, value: String }

input PodRentInterruptableInput {
  bidPerGpu: Float!
  gpuCount: Int!
  gpuTypeId: String
  cloudType: CloudTypeEnum
  name: String
  imageName: String
  networkVolumeId: String
  volumeMountPath: String
  volumeInGb: Int
  containerDiskInGb: Int
  env: [EnvironmentVariableInput]
  dockerArgs: String
  ports: String
  dataCenterId: String
  countryCode: String
  allowedCudaVersions: [String]
  minCudaVersion: String
  cudaVersion: String
  minVcpuCount: Int
  minMemoryInGb: Int
  minDisk: Int
  minDownload: Int
  minUpload: Int
  startSsh: Boolean
  startJupyter: Boolean
  supportPublicIp: Boolean
  templateId: String
  terminateAfter: String
  stopAfter: String
  volumeKey: String
  deployCost: Float
  containerRegistryAuthId: String
}

input PodFindAndDeployOnDemandInput {
  gpuTypeId: String
  gpuCount: Int
  cloudType: CloudTypeEnum
  name: String
  imageName: String
  networkVolumeId: String
  volumeMountPath: String
  volumeInGb: Int
  containerDiskInGb: Int
  env: [EnvironmentVariableInput]
  dockerArgs: String
  ports: String
  dataCenterId: String
  countryCode: String
  allowedCudaVersions: [String]
  minCudaVersion: String
  minVcpuCount: Int
  minMemoryInGb: Int
  minDisk: Int
  minDownload: Int
  minUpload: Int
  startSsh: Boolean
  startJupyter: Boolean
  supportPublicIp: Boolean
  templateId: String
  instanceId: String
  terminateAfter: String
  stopAfter: String
  volumeKey: String
  deployCost: Float
  containerRegistryAuthId: String
}

input PodTerminateInput { podId: String! }
input PodStopInput { podId: String!, incrementVersion: Boolean }
input PodFilter { podId: String! }
input GpuTypeFilter { id: String, ids: [String] }
input GpuLowestPriceInput {
  gpuCount: Int
  secureCloud: Boolean
  dataCenterId: String
  countryCode: String
  minMemoryInGb: Int
  minVcpuCount: Int
  minDisk: Int
  minDownload: Int
  minUpload: Int
  supportPublicIp: Boolean
  allowedCudaVersions: [String]
  includeAiApi: Boolean
  globalNetwork: Boolean
}

type LowestPrice {
  gpuName: String
  gpuTypeId: String
  minimumBidPrice: Float
  uninterruptablePrice: Float
  minMemory: Int
  minVcpu: Int
  stockStatus: String
  availableGpuCounts: [Int]
  maxUnreservedGpuCount: Int
}

type GpuType {
  id: String!
  displayName: String
  manufacturer: String
  memoryInGb: Int
  cudaCores: Int
  maxGpuCount: Int
  maxGpuCountSecureCloud: Int
  maxGpuCountCommunityCloud: Int
  secureCloud: Boolean
  communityCloud: Boolean
  securePrice: Float
  communityPrice: Float
  secureSpotPrice: Float
  communitySpotPrice: Float
  oneWeekPrice: Float
  oneMonthPrice: Float
  threeMonthPrice: Float
  sixMonthPrice: Float
  lowestPrice(input: GpuLowestPriceInput): LowestPrice
}

type Machine {
  podHostId: String
  gpuDisplayName: String
  gpuTypeId: String
  dataCenterId: String
  location: String
  secureCloud: Boolean
}

type PodRuntimePorts { ip: String, isIpPublic: Boolean, privatePort: Int, publicPort: Int, type: String }
type PodRuntimeGpus { id: String, gpuUtilPercent: Int, memoryUtilPercent: Int }
type PodRuntimeContainer { cpuPercent: Int, memoryPercent: Int }
type PodRuntime {
  uptimeInSeconds: Int
  ports: [PodRuntimePorts]
  gpus: [PodRuntimeGpus]
  container: PodRuntimeContainer
}

type Pod {
  id: String!
  name: String
  desiredStatus: PodStatus
  lastStatusChange: String
  imageName: String
  env: [String]
  dockerArgs: String
  dockerId: String
  machineId: String
  machine: Machine
  costPerHr: Float
  adjustedCostPerHr: Float
  gpuCount: Int
  vcpuCount: Int
  memoryInGb: Int
  containerDiskInGb: Int
  volumeInGb: Int
  volumeMountPath: String
  networkVolumeId: String
  podType: String
  port: Int
  ports: String
  uptimeSeconds: Int
  runtime: PodRuntime
}

type NetworkVolume { id: String, name: String, size: Int, dataCenterId: String }

type User {
  id: String
  email: String
  pubKey: String
  clientBalance: Float
  currentSpendPerHr: Float
  networkVolumes: [NetworkVolume]
  pods: [Pod]
}

type Query {
  gpuTypes(input: GpuTypeFilter): [GpuType]
  pod(input: PodFilter): Pod
  myself: User
}

type Mutation {
  podRentInterruptable(input: PodRentInterruptableInput!): Pod
  podFindAndDeployOnDemand(input: PodFindAndDeployOnDemandInput): Pod
  podTerminate(input: PodTerminateInput!): Void
  podStop(input: PodStopInput!): Pod
}
"""

SCHEMA = build_schema(SDL)

# How GraphQL spells the fields the account's refusals name.
FIELD_NAMES: dict[str, str] = {
    "gpu_type": "gpuTypeId",
    "gpu_count": "gpuCount",
    "image": "imageName",
    "volume": "networkVolumeId",
    "data_center": "dataCenterId",
    "cloud": "cloudType",
    "cuda": "allowedCudaVersions",
    "bid": "bidPerGpu",
    "env": "env",
    "registry": "containerRegistryAuthId",
    "terminate_after": "terminateAfter",
}

GRAPHQL_RETIRED = (
    "The GraphQL API has been retired. Use the REST API (https://rest.runpod.io/v2) instead: "
    "https://docs.runpod.io/api-reference"
)
"""What ``/graphql`` answers (HTTP 410) once the fake plays a RunPod whose GraphQL API is gone."""


_DESIRED = {ERROR: "DEAD"}  # GraphQL's PodStatus has no ERROR


class RunPodError(Exception):
    """An error a resolver reports the way RunPod does: ``extensions.code`` RUNPOD, HTTP 200."""

    extensions: ClassVar[dict[str, str]] = {"code": "RUNPOD"}


class ForbiddenError(RunPodError):
    """A pod-scoped key reaching past its own pod: HTTP 200, ``extensions.code`` FORBIDDEN."""

    extensions: ClassVar[dict[str, str]] = {"code": "FORBIDDEN"}


POD_KEY_FORBIDDEN = "access denied: a pod's API key may only terminate its own pod"


class GraphQLApi:
    """``POST /graphql`` bound to one account."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self._root = _Root(account)

    async def endpoint(self, request: Request) -> Response:
        """Authenticate (Bearer or ``?api_key=``), apply faults, run the operation.

        HTTP statuses: 410 once retired; 401 for a missing or unknown key
        (the SDK raises ``AuthenticationError`` on exactly that); 429/500 for
        injected faults; 400 for a document that does not parse or validate;
        200 for everything else, refusals included (``errors`` + ``data``).
        A pod's scoped key may run only ``podTerminate`` of its own pod.
        """
        if self.account.graphql_retired:
            return _errors(410, GRAPHQL_RETIRED, "GONE")
        principal = self.account.principal(bearer_key(request, allow_query=True))
        if principal is None:
            return _errors(401, "Unauthorized request, please check your API key.", "UNAUTHENTICATED")
        if principal.is_account:  # faults hit account keys only, as on REST
            if self.account.take_fault("rate_limit"):
                return _errors(
                    429, "rate limit exceeded", "RATE_LIMITED", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
                )
            if self.account.take_fault("server_error"):
                return _errors(500, SOMETHING_WENT_WRONG, "INTERNAL_SERVER_ERROR")
        try:
            payload = json.loads(await request.body() or b"null")
        except ValueError:
            return _errors(400, "request body is not valid JSON", "BAD_REQUEST")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return _errors(400, 'expected a JSON body {"query": "..."}', "BAD_REQUEST")
        try:
            document = parse(payload["query"])
        except GraphQLError as exc:
            return JSONResponse({"errors": [_coded(exc, "GRAPHQL_PARSE_FAILED")]}, status_code=400)
        problems = validate(SCHEMA, document)
        if problems:
            return JSONResponse({"errors": [_coded(e, "GRAPHQL_VALIDATION_FAILED") for e in problems]}, status_code=400)
        if not principal.is_account and not _pod_key_may_run(document, self.account.pod_key_graphql):
            return _errors(200, POD_KEY_FORBIDDEN, "FORBIDDEN", data=True)
        self.account.tick()
        context: dict[str, Any] = {"status": 200, "principal": principal}
        result = execute_sync(
            SCHEMA,
            document,
            root_value=self._root,
            context_value=context,
            variable_values=payload.get("variables"),
            operation_name=payload.get("operationName"),
        )
        body: dict[str, Any] = {}
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
        body["data"] = result.data
        return JSONResponse(body, status_code=context["status"])


class _Root:
    """Root resolvers: graphql-core calls ``root.<field>(info, **args)`` for Query and Mutation fields."""

    def __init__(self, account: Account) -> None:
        self.account = account

    # --- queries

    def gpuTypes(self, info: Any, input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        wanted: set[str] | None = None
        if input:
            wanted = set(input.get("ids") or []) | ({input["id"]} if input.get("id") else set())
        return [
            self._gpu_type(gpu)
            for gpu in sorted(GPU_TYPES.values(), key=lambda g: g.id)
            if wanted is None or gpu.id in wanted
        ]

    def pod(self, info: Any, input: dict[str, Any]) -> dict[str, Any] | None:
        view = self.account.get(input["podId"])
        return self._pod(view) if view is not None else None

    def myself(self, info: Any) -> dict[str, Any]:
        return {
            "id": "user_fake",
            "email": "rehearsal@fake-runpod.local",
            "pubKey": "",
            "clientBalance": round(self.account.balance(), 6),
            "currentSpendPerHr": round(self.account.spend_per_hour(), 6),
            "networkVolumes": [
                {"id": v.id, "name": v.name or v.id, "size": v.size_gb, "dataCenterId": v.data_center_id}
                for v in self.account.volumes.values()
            ],
            "pods": [self._pod(view) for view in self.account.pods()],
        }

    # --- mutations

    def podRentInterruptable(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return self._create(info, input, spot=True)

    def podFindAndDeployOnDemand(self, info: Any, input: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._create(info, input or {}, spot=False)

    def podTerminate(self, info: Any, input: dict[str, Any]) -> None:
        principal: Principal = info.context["principal"]
        if not principal.is_account and principal.pod_id != input["podId"]:
            raise ForbiddenError(POD_KEY_FORBIDDEN)
        try:
            self.account.terminate(input["podId"])
        except Refused:
            raise RunPodError(POD_NOT_FOUND_TO_TERMINATE) from None

    def podStop(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        try:
            view = self.account.action(input["podId"], "stop")
        except Refused as refused:
            raise RunPodError(refused.message) from None
        return self._pod(view)

    # --- helpers

    def _create(self, info: Any, given: dict[str, Any], *, spot: bool) -> dict[str, Any]:
        try:
            view = self.account.create(_pod_request(given, spot=spot))
        except Refused as refused:
            raise RunPodError(refused.text(FIELD_NAMES)) from None
        if self.account.take_fault("create_then_500"):
            # The create-then-500 bug: the pod exists and bills, the caller hears a 500.
            info.context["status"] = 500
            raise RunPodError(SOMETHING_WENT_WRONG)
        return self._pod(view)

    def _gpu_type(self, gpu: GpuType) -> dict[str, Any]:
        account = self.account

        def lowest_price(info: Any, input: dict[str, Any] | None = None) -> dict[str, Any]:
            options = input or {}
            count = options.get("gpuCount") or 1
            secure = options.get("secureCloud")
            cloud = "ALL" if secure is None else ("SECURE" if secure else "COMMUNITY")
            stock = account.stock_level(gpu.id, cloud)
            # Per data center when one is named (the floor moves per data center), else the lowest anywhere.
            data_center = options.get("dataCenterId") or None
            return {
                "gpuName": gpu.display_name,
                "gpuTypeId": gpu.id,
                "minimumBidPrice": account.minimum_bid(gpu.id, cloud, data_center),
                "uninterruptablePrice": gpu.on_demand_price(cloud),
                "minMemory": MEMORY_GB_PER_GPU * count,
                "minVcpu": VCPUS_PER_GPU * count,
                "stockStatus": stock,
                "availableGpuCounts": list(range(1, gpu.max_count + 1)) if stock != "None" else [],
                "maxUnreservedGpuCount": gpu.max_count if stock != "None" else 0,
            }

        return {
            "id": gpu.id,
            "displayName": gpu.display_name,
            "manufacturer": gpu.manufacturer,
            "memoryInGb": gpu.memory_gb,
            "cudaCores": None,
            "maxGpuCount": gpu.max_count,
            "maxGpuCountSecureCloud": gpu.max_count if gpu.secure is not None else 0,
            "maxGpuCountCommunityCloud": gpu.max_count if gpu.community is not None else 0,
            "secureCloud": gpu.secure is not None,
            "communityCloud": gpu.community is not None,
            "securePrice": gpu.secure,
            "communityPrice": gpu.community,
            "secureSpotPrice": gpu.secure_spot,
            "communitySpotPrice": gpu.community_spot,
            "oneWeekPrice": None,
            "oneMonthPrice": None,
            "threeMonthPrice": None,
            "sixMonthPrice": None,
            "lowestPrice": lowest_price,
        }

    def _pod(self, view: FakePodView) -> dict[str, Any]:
        req = view.request
        now = self.account.clock.now()
        # GraphQL knows desired states only: a pod on its way up already "wants" RUNNING.
        desired = "RUNNING" if view.status in ACTIVE_STATUSES else _DESIRED.get(view.status, view.status)
        runtime = None
        if view.status == RUNNING and view.container_started_at is not None:
            runtime = {
                "uptimeInSeconds": max(0, int(now - view.container_started_at)),
                "ports": [],
                "gpus": [
                    {"id": f"GPU-{view.machine_id}-{i}", "gpuUtilPercent": 0, "memoryUtilPercent": 0}
                    for i in range(view.gpu_count)
                ],
                "container": {"cpuPercent": 0, "memoryPercent": 0},
            }
        return {
            "id": view.id,
            "name": view.name,
            "desiredStatus": desired,
            "lastStatusChange": view.last_status_change,
            "imageName": req.image,
            "env": [f"{key}={value}" for key, value in view.env.items()],
            "dockerArgs": req.args,
            "dockerId": None,
            "machineId": view.machine_id,
            "machine": {
                "podHostId": view.host_id,
                "gpuDisplayName": GPU_TYPES[view.gpu_type].display_name if view.gpu_type is not None else None,
                "gpuTypeId": view.gpu_type,
                "dataCenterId": view.data_center_id,
                "location": view.data_center_id,
                "secureCloud": view.cloud == "SECURE",
            },
            "costPerHr": view.cost_per_hr if view.status in ACTIVE_STATUSES else 0.0,
            "adjustedCostPerHr": view.cost_per_hr if view.status in ACTIVE_STATUSES else 0.0,
            "gpuCount": view.gpu_count,
            "vcpuCount": view.vcpu_count,
            "memoryInGb": view.memory_gb,
            "containerDiskInGb": req.disk,
            "volumeInGb": req.persistent_size or 0,
            "volumeMountPath": req.mount_path,
            "networkVolumeId": req.network_volume_id,
            "podType": "INTERRUPTABLE" if view.spot else "RESERVED",
            "port": None,
            "ports": ",".join(req.ports),
            "uptimeSeconds": runtime["uptimeInSeconds"] if runtime else 0,
            "runtime": runtime,
        }


def _pod_request(given: dict[str, Any], *, spot: bool) -> PodRequest:
    """The account's request from GraphQL input (RunPod's defaults: mount at /workspace, 50 GB disk)."""
    env = {item["key"]: item.get("value") or "" for item in given.get("env") or [] if item}
    volume_id = given.get("networkVolumeId") or None
    volume_gb = given.get("volumeInGb") or 0
    mount_path = given.get("volumeMountPath") or "/workspace"
    data_center = given.get("dataCenterId")
    min_cuda = given.get("minCudaVersion") or given.get("cudaVersion")
    return PodRequest(
        terminate_after=_deadline(given.get("terminateAfter")),
        registry=given.get("containerRegistryAuthId") or None,
        name=given.get("name") or "",
        image=given.get("imageName") or "",
        gpu_type_id=given.get("gpuTypeId") or "",
        gpu_count=given.get("gpuCount") or 1,
        cloud=given.get("cloudType") or "ALL",
        spot=spot,
        bid_per_gpu=given.get("bidPerGpu") if spot else None,
        env=env,
        args=given.get("dockerArgs") or "",
        disk=given.get("containerDiskInGb") or 50,
        ports=tuple(part.strip() for part in (given.get("ports") or "").split(",") if part.strip()),
        data_center_ids=(data_center,) if data_center else (),
        network_volume_id=volume_id,
        persistent_size=volume_gb if volume_id is None and volume_gb > 0 else None,
        mount_path=mount_path if (volume_id is not None or volume_gb > 0) else None,
        allowed_cuda_versions=tuple(v for v in given.get("allowedCudaVersions") or () if v),
        min_cuda_version=min_cuda,
    )


def _deadline(value: str | None) -> datetime | None:
    """``terminateAfter`` as a UTC datetime (ISO 8601; a bare time is UTC); a bad one is refused."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise Refused(Refusal.RULE, f"not an ISO 8601 date-time: {value!r}", "terminate_after") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _pod_key_may_run(document: DocumentNode, allowed: bool) -> bool:
    """Whether a pod's scoped key may run this document: only ``podTerminate`` mutations, and only if allowed."""
    if not allowed:
        return False
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode) or definition.operation is not OperationType.MUTATION:
            return False
        for selection in definition.selection_set.selections:
            if not isinstance(selection, FieldNode) or selection.name.value != "podTerminate":
                return False
    return True


def _coded(error: GraphQLError, code: str) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    formatted["extensions"] = {**(error.extensions or {}), "code": code}
    return formatted


def _errors(
    status: int, message: str, code: str, headers: dict[str, str] | None = None, *, data: bool = False
) -> Response:
    """A GraphQL error answer: ``{"errors": [...]}`` (and ``"data": null`` where the operation was valid)."""
    body: dict[str, Any] = {"errors": [{"message": message, "extensions": {"code": code}}]}
    if data:
        body["data"] = None
    return JSONResponse(body, status_code=status, headers=headers)
