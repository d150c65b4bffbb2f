"""RunPod's API, and the only module that knows its JSON.

Pods are created, listed and terminated through REST v2 (``RUNPOD_API_URL``,
default ``https://api.runpod.io``); spot pods exist only through GraphQL
``podRentInterruptable`` (``RUNPOD_API_BASE_URL`` + ``/graphql``, the base the
``runpod`` SDK reads too), since v2 has no spot field. Everything returned is
one of our frozen dataclasses; everything raised is a :class:`CloudError`
subclass chosen by status code.

Retries follow idempotency: GET and DELETE are retried on 5xx, 429 and
connection errors; a create only on 429 and on a connection that never
opened. Every call has a deadline (``deadline``, about 20 s, waits included)
as well as a cap on tries, so one controller poll never outlives the study's
lease; a call that runs out of either on a failure worth retrying raises
:class:`ApiUnavailableError`, which the controller rides out. ``Retry-After``
is honoured, capped at ``max_wait``.

Creates are never posted twice for one pod: after a 5xx on a create (or an
answer lost on the way), the pod is looked up by name with the retrying
listing, because RunPod can answer 500 for a pod it did make (and bills). A
pod of that name is the answer; a listing that answered without it lets the
create be tried again; no listing answering raises
:class:`LaunchUnknownError`: the pod may exist, and nothing may create that
attempt again until a listing has answered.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)
from urllib3.exceptions import ConnectTimeoutError

from hpo.errors import (
    ApiError,
    ApiUnavailableError,
    AuthError,
    BalanceError,
    CapacityError,
    CloudError,
    LaunchUnknownError,
    PoolDeniedError,
    RequestRejectedError,
)

log = logging.getLogger(__name__)

DEFAULT_REST_URL = "https://api.runpod.io"
DEFAULT_GRAPHQL_BASE = "https://api.runpod.io"

# RunPod's v2 status -> ours. An unknown status is an error, not a guess.
_STATUS = {
    "PROVISIONING": "provisioning",
    "STARTING": "starting",
    "RUNNING": "running",
    "EXITED": "exited",
    "ERROR": "error",
    "TERMINATED": "terminated",
}

# No-capacity answers carry no machine-readable code on RunPod (v2 400 and
# GraphQL alike: only a human-readable text), so this is the one place that
# reads message text. Phrases from RUNPOD.md §1.6 and §2.
_CAPACITY_PHRASES = (
    "no longer any instances available",
    "no instances currently available",
    "does not have the resources",
    "not enough free gpus",
)


def is_capacity_message(text: str) -> bool:
    """True if RunPod's human-readable ``text`` says a GPU type is sold out."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in _CAPACITY_PHRASES)


@dataclass(frozen=True)
class Pod:
    """A pod as we use it (our names, not RunPod's)."""

    id: str
    name: str
    status: str  # provisioning | starting | running | exited | error | terminated
    gpu_type: str | None = None
    gpu_count: int = 1
    cost_per_hr: float | None = None
    data_center: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    #: Seconds since the pod's container started (v2 ``runtime.uptime``; only while RUNNING).
    uptime_s: float | None = None

    def provider_time(self) -> float | None:
        """Epoch seconds on RunPod's clock when the pod was listed: ``startedAt`` + uptime (None if unknown).

        ``startedAt`` is when the pod first ran, the uptime counts from its
        container's last start: after a container restart the sum falls short
        of RunPod's time (never beyond it), so take the largest over pods.
        """
        if self.started_at is None or self.uptime_s is None:
            return None
        return self.started_at.astimezone(UTC).timestamp() + self.uptime_s


@dataclass(frozen=True)
class PodRequest:
    """What to create: one GPU type per request (v2 never falls back)."""

    name: str
    image: str
    gpu_type: str
    gpu_count: int = 1
    data_center_ids: tuple[str, ...] = ()
    cuda_versions: tuple[str, ...] = ()
    container_disk_gb: int = 50
    volume_id: str | None = None
    mount_path: str = "/workspace"
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class GpuPrice:
    """What a GPU type costs per GPU-hour in Secure Cloud, from ``gpuTypes``."""

    gpu_type: str
    on_demand: float | None
    spot: float | None
    minimum_bid: float | None
    stock: str | None


class _Transient(Exception):
    """A failure worth another try (carries the error to raise if tries run out)."""

    def __init__(self, error: ApiUnavailableError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _MaybeDone(Exception):
    """A create that may have happened: answered 5xx, or its answer was lost. Never retried blindly."""

    def __init__(self, error: ApiUnavailableError) -> None:
        super().__init__(str(error))
        self.error = error


# Failures of the transport worth another try (the rest, a malformed URL say, are our own mistakes).
_TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def _was_sent(exc: requests.RequestException) -> bool:
    """False only when the request surely never reached RunPod (no connection was ever opened)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, ConnectTimeoutError)  # urllib3: refused, DNS and connect timeouts


def _uptime(runtime: Any) -> float | None:
    """v2 ``runtime.uptime`` (seconds since the container started), or None where missing or not a sane number."""
    if not isinstance(runtime, Mapping):
        return None
    value = runtime.get("uptime")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if text.endswith(" UTC"):  # v1's Go format: "2026-08-20 06:16:19.436 +0000 UTC"
        text = text[: -len(" UTC")]
        try:
            return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f %z")
        except ValueError:
            return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def pod_from_json(raw: Mapping[str, Any]) -> Pod:
    """Translate one v2 Pod object."""
    status = raw.get("status")
    if status not in _STATUS:
        raise ApiError(f"RunPod returned pod {raw.get('id')!r} with unknown status {status!r}")
    gpu = raw.get("gpu") or {}
    return Pod(
        id=str(raw["id"]),
        name=str(raw.get("name") or ""),
        status=_STATUS[status],
        gpu_type=gpu.get("id"),
        gpu_count=int(gpu.get("count") or 1),
        cost_per_hr=float(raw["cost"]) if raw.get("cost") is not None else None,
        data_center=raw.get("dataCenterId"),
        created_at=_parse_time(raw.get("createdAt")),
        started_at=_parse_time(raw.get("startedAt")),
        uptime_s=_uptime(raw.get("runtime")),
    )


def create_body(request: PodRequest) -> dict[str, Any]:
    """The ``POST /v2/pods`` body for ``request`` (secure cloud, the network volume at its mount path)."""
    gpu: dict[str, Any] = {"id": request.gpu_type, "count": request.gpu_count}
    if request.cuda_versions:
        gpu["allowedCudaVersions"] = list(request.cuda_versions)
    body: dict[str, Any] = {
        "name": request.name,
        "image": request.image,
        "gpu": gpu,
        "cloud": "SECURE",
        "disk": request.container_disk_gb,
        "env": dict(request.env),
    }
    if request.data_center_ids:
        body["dataCenterIds"] = list(request.data_center_ids)
    if request.volume_id:
        body["mounts"] = {"network": [{"volumeId": request.volume_id, "path": request.mount_path}]}
    if request.ports:
        body["ports"] = list(request.ports)
    return body


class _Enum(str):
    """A GraphQL enum value: written without quotes."""


def _gql(value: Any) -> str:
    """A GraphQL literal (RunPod's API takes values inline, as the runpod SDK sends them)."""
    if isinstance(value, _Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid GraphQL string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_gql(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_gql(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no GraphQL literal for {value!r}")


def spot_input(request: PodRequest, bid_per_gpu: float) -> dict[str, Any]:
    """The ``podRentInterruptable`` input for ``request`` at ``bid_per_gpu``."""
    data: dict[str, Any] = {
        "bidPerGpu": round(bid_per_gpu, 4),
        "cloudType": _Enum("SECURE"),
        "gpuCount": request.gpu_count,
        "gpuTypeId": request.gpu_type,
        "name": request.name,
        "imageName": request.image,
        "containerDiskInGb": request.container_disk_gb,
        "volumeInGb": 0,
        "volumeMountPath": request.mount_path,
        "env": [{"key": k, "value": v} for k, v in request.env.items()],
        "ports": ",".join(request.ports),
    }
    if request.volume_id:
        data["networkVolumeId"] = request.volume_id
    if len(request.data_center_ids) == 1:
        data["dataCenterId"] = request.data_center_ids[0]
    if request.cuda_versions:
        data["allowedCudaVersions"] = list(request.cuda_versions)
    return data


class RunPodApi:
    """A RunPod API client: one ``requests`` session, a timeout on every call, retries by idempotency.

    Args:
        api_key: Sent as ``Authorization: Bearer``; never logged.
        rest_url: REST base (``RUNPOD_API_URL``), without ``/v2``.
        graphql_base: GraphQL base (``RUNPOD_API_BASE_URL``); ``/graphql`` is appended.
        timeout: Seconds per HTTP call (less where the call's deadline is nearer).
        attempts: Tries per call where a retry is allowed.
        sleep: How to wait between tries (injectable for tests).
        max_wait: Cap on one wait, whatever ``Retry-After`` says.
        deadline: Seconds one call may take in all, waits and tries included
            (a create: its lookups too); past it a failure worth retrying
            raises :class:`ApiUnavailableError` rather than waiting on. Keep
            it well under the study's lease (60 s).
    """

    def __init__(
        self,
        api_key: str,
        *,
        rest_url: str = DEFAULT_REST_URL,
        graphql_base: str = DEFAULT_GRAPHQL_BASE,
        timeout: float = 30.0,
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = 10.0,
        deadline: float = 20.0,
    ) -> None:
        self._rest = rest_url.rstrip("/")
        self._graphql = graphql_base.rstrip("/") + "/graphql"
        self._timeout = timeout
        self._attempts = attempts
        self._sleep = sleep
        self._max_wait = max_wait
        self._deadline = deadline
        self._backoff = wait_exponential_jitter(multiplier=0.5, max=max_wait)  # 0.5 s, 1 s, 2 s, ... plus jitter
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> RunPodApi:
        """A client configured from ``RUNPOD_API_KEY``, ``RUNPOD_API_URL`` and ``RUNPOD_API_BASE_URL``."""
        env = os.environ if env is None else env
        key = env.get("RUNPOD_API_KEY", "").strip()
        if not key:
            raise AuthError("RUNPOD_API_KEY is not set: create an API key in RunPod's console and export it")
        return cls(
            key,
            rest_url=env.get("RUNPOD_API_URL") or DEFAULT_REST_URL,
            graphql_base=env.get("RUNPOD_API_BASE_URL") or DEFAULT_GRAPHQL_BASE,
            **kwargs,
        )

    @property
    def rest_url(self) -> str:
        """The REST base this client talks to (names its price cache: a fake's prices are not RunPod's)."""
        return self._rest

    def close(self) -> None:
        self._session.close()

    # -- pods ---------------------------------------------------------------------------

    def list_pods(self) -> list[Pod]:
        """Every pod of the account (one call; matched to attempts by name upstream)."""
        return self._list_pods(self._until())

    def _list_pods(self, until: float) -> list[Pod]:
        body = self._call("GET", "/v2/pods", until=until)
        return [pod_from_json(raw) for raw in (body or {}).get("pods", [])]

    def get_pod(self, pod_id: str) -> Pod | None:
        """The pod, or None if RunPod does not know it (any more)."""
        return self._get_pod(pod_id, self._until())

    def _get_pod(self, pod_id: str, until: float) -> Pod | None:
        try:
            return pod_from_json(self._call("GET", f"/v2/pods/{pod_id}", until=until))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def terminate_pod(self, pod_id: str) -> None:
        """Terminate the pod; a pod already gone (404) is success."""
        try:
            self._call("DELETE", f"/v2/pods/{pod_id}")
        except ApiError as exc:
            if exc.status != 404:
                raise

    def create_pod(self, request: PodRequest) -> Pod:
        """Create an on-demand pod through REST v2; returns once RunPod accepted it.

        Raises :class:`LaunchUnknownError` when the create may have made the
        pod and no lookup by name could tell (see the module docstring).
        """
        body = create_body(request)

        def post(until: float) -> Pod:
            return pod_from_json(self._call("POST", "/v2/pods", json_body=body, retry=False, until=until))

        return self._create_once(request.name, post, method="POST", path="/v2/pods")

    def create_spot_pod(self, request: PodRequest, bid_per_gpu: float) -> Pod:
        """Create a spot (interruptible) pod through GraphQL ``podRentInterruptable``.

        Raises :class:`LaunchUnknownError` like :meth:`create_pod`.
        """
        query = (
            "mutation { podRentInterruptable(input: "
            + _gql(spot_input(request, bid_per_gpu))
            + ") { id desiredStatus imageName machineId } }"
        )

        def post(until: float) -> Pod:
            data = self._graphql_call(query, field_name="podRentInterruptable", retry=False, until=until)
            if not isinstance(data, Mapping) or not data.get("id"):
                raise _MaybeDone(ApiUnavailableError(
                    f"podRentInterruptable for {request.name!r} answered without a pod id",
                    method="POST", path="/graphql",
                ))
            pod_id = str(data["id"])
            accepted = Pod(
                id=pod_id, name=request.name, status="provisioning",
                gpu_type=request.gpu_type, gpu_count=request.gpu_count,
            )
            try:
                return self._get_pod(pod_id, until) or accepted
            except ApiUnavailableError:
                return accepted  # made for sure: never let a failing read-back make it look unmade

        return self._create_once(request.name, post, method="POST", path="/graphql")

    def _create_once(self, name: str, post: Callable[[float], Pod], *, method: str, path: str) -> Pod:
        """Post a create until it is answered, never posting again before a lookup by name has answered.

        After a 5xx (or a lost answer) the pod is looked up by name: found, it
        is the answer; absent (the listing answered), the create may be posted
        again; no listing answering within the deadline: :class:`LaunchUnknownError`.
        """
        until = self._until()
        for round_ in range(self._attempts):
            try:
                return post(until)
            except _MaybeDone as lost:
                made = self._lookup(name, until, lost.error)
                if made is not None:
                    log.info("create of %s failed (%s), but the pod exists (%s): using it", name, lost.error, made.id)
                    return made
                log.warning("create of %s failed (%s) and no pod of that name exists", name, lost.error)
            wait = min(self._max_wait, 2.0)
            if round_ + 1 >= self._attempts or time.monotonic() + wait >= until:
                break
            self._sleep(wait)
        raise ApiUnavailableError(
            f"{method} {path}: creating {name!r} kept failing (5xx or no answer); a lookup by name shows no such pod",
            method=method, path=path,
        )

    def _lookup(self, name: str, until: float, cause: ApiUnavailableError) -> Pod | None:
        """The pod named ``name`` after a create that may have made it; LaunchUnknownError if no listing answers."""
        try:
            pods = self._list_pods(until)
        except ApiUnavailableError as exc:
            raise LaunchUnknownError(
                f"{cause} and no lookup by name has answered since ({exc}): pod {name!r} may exist; "
                f"list the pods before creating it again",
                method=cause.method, path=cause.path, status=cause.status, detail=cause.detail,
            ) from None
        # A terminated pod is not the one just made (it would be one of an earlier try, already ended).
        named = [pod for pod in pods if pod.name == name and pod.status != "terminated"]
        return min(named, key=by_age, default=None)

    def gpu_price(self, gpu_type: str) -> GpuPrice:
        """Secure-cloud on-demand and spot prices of ``gpu_type`` from GraphQL ``gpuTypes``."""
        query = (
            "query { gpuTypes(input: {id: " + _gql(gpu_type) + "}) { id securePrice secureSpotPrice "
            "lowestPrice(input: {gpuCount: 1, secureCloud: true}) { minimumBidPrice uninterruptablePrice stockStatus } } }"
        )
        types = self._graphql_call(query, field_name="gpuTypes", retry=True) or []
        for raw in types:
            if raw.get("id") == gpu_type:
                lowest = raw.get("lowestPrice") or {}
                return GpuPrice(
                    gpu_type=gpu_type,
                    on_demand=raw.get("securePrice"),
                    spot=raw.get("secureSpotPrice"),
                    minimum_bid=lowest.get("minimumBidPrice"),
                    stock=lowest.get("stockStatus"),
                )
        raise RequestRejectedError(f"RunPod does not know GPU type {gpu_type!r}", detail=gpu_type)

    def on_demand_prices(self) -> dict[str, float]:
        """Secure Cloud on-demand $/GPU-hour per GPU type, from REST v2 ``GET /v2/catalog/gpus``.

        Types not sold in Secure Cloud are left out (the catalog prices them 0).
        """
        body = self._call("GET", "/v2/catalog/gpus")
        prices: dict[str, float] = {}
        for raw in (body or {}).get("gpus", []):
            price = (raw.get("price") or {}).get("secure")
            if raw.get("id") and raw.get("secure") and isinstance(price, (int, float)) and price > 0:
                prices[str(raw["id"])] = float(price)
        return prices

    def spot_prices(self) -> dict[str, float]:
        """Secure Cloud spot $/GPU-hour per GPU type, from GraphQL ``gpuTypes`` (v2 has no spot price)."""
        types = self._graphql_call("query { gpuTypes { id secureSpotPrice } }", field_name="gpuTypes", retry=True) or []
        return {
            str(raw["id"]): float(raw["secureSpotPrice"])
            for raw in types
            if raw.get("id") and isinstance(raw.get("secureSpotPrice"), (int, float)) and raw["secureSpotPrice"] > 0
        }

    def pod_billing(self, since: datetime) -> dict[str, float]:
        """USD billed per pod id since ``since``, from ``GET /v2/billing/pods`` (day buckets, summed).

        One call for the whole account: the records come per pod per bucket,
        and RunPod snaps the window to whole days, so a pod is either wholly
        in the answer or not at all.
        """
        start = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = self._call("GET", f"/v2/billing/pods?bucketSize=day&startTime={start}")
        billed: dict[str, float] = {}
        for record in (body or {}).get("records", []):
            pod_id = record.get("podId")
            amount = record.get("totalAmount")
            if pod_id and isinstance(amount, (int, float)):
                billed[str(pod_id)] = billed.get(str(pod_id), 0.0) + float(amount)
        return billed

    # -- HTTP -----------------------------------------------------------------------------

    def _until(self) -> float:
        """The monotonic instant a call starting now must end by."""
        return time.monotonic() + self._deadline

    def _request_timeout(self, until: float) -> float:
        """Seconds one HTTP request may take: the per-request timeout, less where the deadline is nearer."""
        return min(self._timeout, max(1.0, until - time.monotonic()))

    def _send(
        self, method: str, path: str, what: str, idempotent: bool, until: float, *, json_body: Any = None
    ) -> requests.Response:
        """One HTTP request; a transport failure becomes the exception its retry policy needs."""
        url = self._graphql if path == "/graphql" else self._rest + path
        try:
            return self._session.request(method, url, json=json_body, timeout=self._request_timeout(until))
        except _TRANSPORT_ERRORS as exc:
            base = self._graphql if path == "/graphql" else self._rest
            error = ApiUnavailableError(
                f"{what}: cannot reach RunPod at {base} ({type(exc).__name__})", method=method, path=path
            )
            if idempotent or not _was_sent(exc):
                raise _Transient(error) from exc
            raise _MaybeDone(error) from exc
        except requests.RequestException as exc:  # a malformed URL and the like: retrying will not help
            raise ApiError(f"{what}: {type(exc).__name__}: {exc}", method=method, path=path) from exc

    @staticmethod
    def _json(response: requests.Response, method: str, path: str, idempotent: bool) -> Any:
        """A 2xx answer's JSON (None if empty); an unreadable body is a lost answer."""
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            error = ApiUnavailableError(
                f"{method} {path}: {response.status_code} with a body that is not JSON",
                method=method, path=path, status=response.status_code,
            )
            if idempotent:
                raise _Transient(error) from None
            raise _MaybeDone(error) from None

    def _call(
        self, method: str, path: str, *, json_body: Any = None, retry: bool | None = None, until: float | None = None
    ) -> Any:
        """One REST call with the retry policy of its method; returns the parsed JSON (or None).

        ``retry=False`` is for creates only: a 5xx or a lost answer raises
        :class:`_MaybeDone` for :meth:`_create_once` to resolve.
        """
        idempotent = method in ("GET", "DELETE") if retry is None else retry
        until = self._until() if until is None else until

        def once() -> Any:
            response = self._send(method, path, f"{method} {path}", idempotent, until, json_body=json_body)
            if response.status_code < 300:
                return self._json(response, method, path, idempotent)
            error = self._error(method, path, response)
            if isinstance(error, ApiUnavailableError):  # 429 or 5xx
                if response.status_code == 429 or idempotent:  # a 429 was not acted on: always safe to retry
                    raise _Transient(error, _retry_after(response))
                raise _MaybeDone(error)
            raise error

        return self._with_retries(once, until)

    def _graphql_call(self, query: str, *, field_name: str, retry: bool, until: float | None = None) -> Any:
        until = self._until() if until is None else until

        def once() -> Any:
            response = self._send("POST", "/graphql", f"GraphQL {field_name}", retry, until, json_body={"query": query})
            if response.status_code >= 300:
                error = self._error("POST", "/graphql", response)
                if isinstance(error, ApiUnavailableError):  # 429 or 5xx
                    if response.status_code == 429 or retry:
                        raise _Transient(error, _retry_after(response))
                    raise _MaybeDone(error)
                raise error
            body = self._json(response, "POST", "/graphql", retry)
            if not isinstance(body, dict):
                body = {}
            errors = body.get("errors") or []
            if errors:
                # GraphQL reports failures with HTTP 200 and a message only.
                message = str(errors[0].get("message", "unknown error"))
                kind = CapacityError if is_capacity_message(message) else RequestRejectedError
                if "balance" in message.lower():
                    kind = BalanceError
                raise kind(f"RunPod {field_name}: {message}", method="POST", path="/graphql", status=200, detail=message)
            return (body.get("data") or {}).get(field_name)

        return self._with_retries(once, until)

    def _with_retries(self, once: Callable[[], Any], until: float) -> Any:
        """Run ``once`` until it answers, the tries run out, or the next try would start past ``until``."""

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Transient) and exc.retry_after is not None:
                return min(self._max_wait, exc.retry_after)
            return min(self._max_wait, self._backoff(state))

        tries = 0
        began = time.monotonic()
        try:
            for attempt in Retrying(
                # The attempt cap, and the deadline: no try starts (no wait begins) that would end past it.
                stop=stop_after_attempt(self._attempts) | stop_before_delay(max(0.0, until - began)),
                wait=wait,
                retry=retry_if_exception_type(_Transient),
                sleep=self._sleep,
                reraise=True,
            ):
                with attempt:
                    tries += 1
                    return once()
        except _Transient as exc:
            error = exc.error
            raise ApiUnavailableError(
                f"{error} (gave up after {tries} {'try' if tries == 1 else 'tries'} "
                f"in {time.monotonic() - began:.0f}s)",
                method=error.method, path=error.path, status=error.status, detail=error.detail,
            ) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _error(method: str, path: str, response: requests.Response) -> CloudError:
        """Turn a non-2xx answer into the error its status code means."""
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        detail = str(problem.get("detail") or problem.get("error") or problem.get("message") or problem.get("title") or response.reason)
        violations = problem.get("errors")
        if violations:
            detail += "; " + "; ".join(
                str(v.get("message", v) if isinstance(v, dict) else v) for v in violations[:5]
            )
        status = response.status_code
        text = f"{method} {path}: {status} {detail}"
        args = {"method": method, "path": path, "status": status, "detail": detail}
        if status == 401:
            return AuthError(f"{text} (check RUNPOD_API_KEY)", **args)
        if status == 402:
            return BalanceError(f"RunPod balance is exhausted: {detail}", **args)
        if status == 403:
            creating = method == "POST" and path in ("/v2/pods", "/graphql")
            return PoolDeniedError(text, **args) if creating else AuthError(f"{text} (the key may not do this)", **args)
        if status == 422:
            return RequestRejectedError(text, **args)
        if status == 400 and path == "/v2/pods" and method == "POST":
            return (CapacityError if is_capacity_message(detail) else RequestRejectedError)(text, **args)
        if status == 429 or status >= 500:
            return ApiUnavailableError(text, **args)
        return ApiError(text, **args)


def by_age(pod: Pod) -> tuple[float, str]:
    """Sort key: the oldest pod first (by creation time, then id; an undated pod last)."""
    created = pod.created_at.astimezone(UTC).timestamp() if pod.created_at is not None else math.inf
    return (created, pod.id)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
