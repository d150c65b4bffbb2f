"""RunPod's API, and the only module that knows its JSON.

Pods (GPU pods, and CPU pods for a remote controller) are created, listed
and terminated through REST v2 (``HPO_RUNPOD_REST_URL``,
default ``https://api.runpod.io``, without a version: ``RUNPOD_API_URL`` is
runpodctl's, with ``/v1`` in it); spot pods exist only through GraphQL
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

Every answer is checked for shape where it is read, because a proxy or a
captive portal can answer 200 with an HTML page, and an API can send a list
where an object belongs. Junk (a body that is not JSON, or not the shape
RunPod documents) is one line naming the endpoint, handled like a 5xx: a read
is retried and, if the junk persists, raises :class:`ApiUnavailableError`; a
create answered with junk may have made the pod, so it is looked up by name.
Within a listing, a pod without a usable ``id`` or ``name`` cannot be one of
ours and is skipped with a warning; a pod whose ``status`` is not one RunPod
documents is taken as live (``starting``) with a warning, so junk never makes
anything terminate or relaunch a pod. Fields we can do without (a cost, a GPU
type, a time) that come with the wrong type are read as unknown. A call's
total time is bounded: no try starts past its deadline, each try's timeout
shrinks to what is left of it, and a body that trickles in is cut off at the
try's timeout, so a server that accepts and never answers (or answers a byte
at a time) costs at most the deadline plus one request timeout.

The account's secrets (``/v2/account/secrets``) are written here too. A
secret's value goes into one request body and nowhere else: never into a log
line, an exception or a repr. An error answered to a call that carried a
value keeps RunPod's own text only where it cannot be quoting that value
(:func:`_scrub`); a create of a secret is never posted twice blindly (a 5xx
is resolved by looking the name up, as for pods).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar
from urllib.parse import quote

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)
from urllib3.exceptions import ConnectTimeoutError, DecodeError, ProtocolError, ReadTimeoutError

from hpo.config import kind_of
from hpo.errors import (
    ApiError,
    ApiUnavailableError,
    AuthError,
    BalanceError,
    CapacityError,
    CloudError,
    ConfigError,
    LaunchUnknownError,
    PoolDeniedError,
    RequestRejectedError,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")

MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest answer read; RunPod's biggest (a listing of many pods) is far smaller."""

DEFAULT_REST_URL = "https://api.runpod.io"
DEFAULT_GRAPHQL_BASE = "https://api.runpod.io"

REST_URL_ENV = "HPO_RUNPOD_REST_URL"
"""Our own name for the REST base: runpodctl's ``RUNPOD_API_URL`` carries ``/v1`` and would make ``…/v1/v2/pods``."""
GRAPHQL_BASE_ENV = "RUNPOD_API_BASE_URL"
"""The GraphQL base, as the ``runpod`` SDK reads it (``/graphql`` is appended)."""

_VERSIONED = re.compile(r"/v\d+/*$", re.IGNORECASE)


def check_rest_base(url: str, source: str = "the REST base") -> str:
    """``url`` without a trailing slash; :class:`ConfigError` (one line) if it ends in an API version.

    Our paths carry their version (``/v2/pods``): a base of ``…/v1`` (runpodctl's
    value) would make ``…/v1/v2/pods``, which RunPod answers 404 for every call.
    """
    if _VERSIONED.search(url):
        raise ConfigError(
            f"{source} {url!r} ends in an API version; give the base without it "
            f"(e.g. {_VERSIONED.sub('', url) or DEFAULT_REST_URL!r}): paths such as /v2/pods add their own"
        )
    return url.rstrip("/")

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


# GraphQL is being retired (early 2027): what it may answer once it is gone, besides HTTP 404/410.
_GONE_PHRASES = ("deprecated", "retired", "no longer supported", "no longer available", "has been removed", "sunset")

# A create refused for something every GPU type and mode shares (the image, the network volume and its
# data center, the registry credential): no other candidate can succeed, so the study stops.
_EVERY_CANDIDATE_PHRASES = ("image", "volume", "registry", "credential")


def is_gone_message(text: str) -> bool:
    """True if a GraphQL error's ``text`` says the API itself is retired (not that one request failed)."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in _GONE_PHRASES)


def fails_every_candidate(text: str) -> bool:
    """True if a create error's ``text`` names the image, the volume or the credential: no candidate would do better."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in _EVERY_CANDIDATE_PHRASES)


class GraphQLGoneError(ApiError):
    """RunPod's GraphQL API answered that it no longer exists (404/410, or an error saying it is retired).

    Spot pods exist only through GraphQL, so this ends spot for the process:
    ``spot: prefer`` goes on on-demand (REST v2), ``spot: true`` cannot go on.
    """


class SecretExistsError(RequestRejectedError):
    """RunPod already has a secret of that name (409 on create): update its value, or delete it first.

    ``name`` is the secret's name (:meth:`RunPodApi.secrets` gives its id).
    """

    def __init__(self, message: str, *, name: str, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.name = name


class CandidateRefusedError(CapacityError):
    """RunPod refused one create for a reason we do not recognise (a GraphQL error that names no capacity).

    A :class:`CapacityError`, because what follows is the same: skip this GPU
    type (or mode) and try the next; when every candidate fails, the trial is
    queued and tried later. ``detail`` is RunPod's own text, for the log.
    """


@dataclass(frozen=True)
class Pod:
    """A pod as we use it (our names, not RunPod's).

    A CPU pod (v2 ``cpu``) has ``cpu_flavor`` and ``vcpu_count``, ``gpu_type``
    None and ``gpu_count`` 0; a GPU pod has ``cpu_flavor`` and ``vcpu_count`` None.
    """

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
    #: A CPU pod's flavor (``cpu3c``, ...), from v2 ``cpu.id``; None for a GPU pod or where unreadable.
    cpu_flavor: str | None = None
    #: A CPU pod's vCPUs (v2 ``cpu.vcpuCount``); None for a GPU pod or where unreadable.
    vcpu_count: int | None = None

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
    """What to create: one GPU type per request (v2 never falls back), or one CPU flavor.

    With ``cpu_flavor`` set the pod is a CPU pod of ``vcpu_count`` vCPUs (a
    power of two, at least 2): ``gpu_type``, ``gpu_count`` and
    ``cuda_versions`` are ignored (pass ``gpu_type=""``). CPU pods are
    on-demand only (REST v2): there is no spot CPU pod.
    """

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
    #: The container registry credential's id (v2 ``registry``, GraphQL ``containerRegistryAuthId``), for private images.
    registry_auth_id: str | None = None
    #: When RunPod itself ends the pod (GraphQL ``terminateAfter``; spot creates only), even with no controller alive.
    terminate_after: datetime | None = None
    #: A CPU pod's flavor (``cpu3c``, ...; v2 ``cpu.id``); None for a GPU pod.
    cpu_flavor: str | None = None
    #: A CPU pod's vCPUs (v2 ``cpu.vcpuCount``); read only with ``cpu_flavor``.
    vcpu_count: int = 2


@dataclass(frozen=True)
class GpuPrice:
    """What a GPU type costs per GPU-hour in Secure Cloud, from ``gpuTypes``."""

    gpu_type: str
    on_demand: float | None
    spot: float | None
    minimum_bid: float | None
    stock: str | None
    #: The data center these figures are for (None: across data centers).
    data_center: str | None = None

    @property
    def market(self) -> float | None:
        """The going spot rate: the listed spot price, never below this data center's minimum bid."""
        known = [p for p in (self.spot, self.minimum_bid) if p is not None]
        return max(known) if known else None


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


class _Junk(ApiError):
    """A 2xx answer that is not the shape RunPod documents; the message says what is wrong, in a few words.

    Raised by the validators below and turned, where the call is made, into
    an :class:`ApiUnavailableError` naming the endpoint (retried for reads,
    looked up by name for creates). An :class:`ApiError`, so that a caller of
    :func:`pod_from_json` meets the same family as everywhere else.
    """


class _ErrorFields(TypedDict):
    """The keyword arguments of :class:`CloudError` that :meth:`RunPodApi._error` passes to each subclass."""

    method: str
    path: str
    status: int | None
    detail: str


# Pods a listing skipped, statuses read as live, fields read as unknown: warned about once each per process,
# since a controller lists every few seconds and one odd pod would otherwise flood the log.
_WARNED: set[tuple[str, ...]] = set()
_WARNED_MAX = 10_000


def _warn_once(key: tuple[str, ...], message: str, *args: object) -> None:
    """Log ``message`` at WARNING the first time ``key`` is seen (then stay quiet about it)."""
    if key in _WARNED:
        return
    if len(_WARNED) < _WARNED_MAX:
        _WARNED.add(key)
    log.warning(message, *args)


def _kind(value: Any) -> str:
    """What a JSON value is, in words, for a message (never the value itself: it may be huge)."""
    return kind_of(value, mapping="an object")


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs collapsed), cut at ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _snippet(body: bytes, limit: int = 60) -> str:
    """The start of a body, quoted on one line (control characters escaped), to say what came instead of JSON."""
    text = body[: limit * 4].decode("utf-8", errors="replace")
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("…" if len(flat) > limit else ""))


_WITHHELD = "(RunPod's text withheld: it might quote the secret's value)"
_QUOTE_RUN = 8
"""Characters in a row that, shared by a text and a secret's value, make the text a possible quote of it."""
_QUOTE_EDGE = 64 * 1024


def _scrub(text: str, secret: str | None) -> str:
    """``text`` if it cannot be quoting ``secret`` (whole, escaped, or a run of it), else a note saying it was withheld.

    A text that shares :data:`_QUOTE_RUN` characters in a row with the value
    (or with its JSON or Python escaping) is withheld whole: an answer may
    quote a value cut short. A value shorter than that is looked for whole.
    A long value is searched at its ends (:data:`_QUOTE_EDGE` characters each),
    where a quote of it would start or end.
    """
    if not secret or not text:
        return text
    forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}
    if len(secret) < _QUOTE_RUN:
        return _WITHHELD if any(form in text for form in forms) else text
    if any(form in text for form in forms):
        return _WITHHELD
    searched = [
        form if len(form) <= 2 * _QUOTE_EDGE else form[:_QUOTE_EDGE] + "\0" + form[-_QUOTE_EDGE:] for form in forms
    ]
    for start in range(len(text) - _QUOTE_RUN + 1):
        run = text[start : start + _QUOTE_RUN]
        if any(run in form for form in searched):
            return _WITHHELD
    return text


def _object(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else :class:`_Junk` saying what ``what`` was instead."""
    if not isinstance(value, Mapping):
        raise _Junk(f"{what} is {_kind(value)}, not an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    """``value`` if it is a JSON list, else :class:`_Junk`."""
    if not isinstance(value, list):
        raise _Junk(f"{what} is {_kind(value)}, not a list")
    return value


def _number(value: Any) -> float | None:
    """A finite number (never a boolean or a numeric string), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _price(value: Any) -> float | None:
    """A price or a cost: a finite number >= 0, or None."""
    number = _number(value)
    return number if number is not None and number >= 0 else None


def _text(value: Any) -> str | None:
    """A string, or None for anything else."""
    return value if isinstance(value, str) else None


def _any(body: Any) -> Any:
    """No shape required (``DELETE`` answers 204, any JSON or none will do)."""
    return body


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


def pod_from_json(raw: Any) -> Pod:
    """Translate one v2 Pod object.

    Raises :class:`ApiError` (a private subclass) for what cannot be a pod we
    manage: not an object, or no string ``id`` or ``name``. A status RunPod
    does not document is read as ``starting`` (live: never terminated or
    relaunched for it), and a field we can do without that has the wrong type
    is read as unknown; both are warned about once.
    """
    raw = _object(raw, "the pod")
    pod_id = raw.get("id")
    if not isinstance(pod_id, str) or not pod_id.strip():
        raise _Junk(f"a pod has no usable id ({_kind(pod_id)})")
    name = raw.get("name")
    if not isinstance(name, str):
        raise _Junk(f"pod {pod_id!r} has no usable name ({_kind(name)})")
    status = raw.get("status")
    ours = _STATUS.get(status) if isinstance(status, str) else None
    if ours is None:
        shown = _one_line(repr(status), 40)
        _warn_once(
            ("status", pod_id, shown),
            "RunPod reports pod %s (%s) with status %s, which its API does not define: "
            "taking it as live (nothing is terminated or relaunched for it)",
            pod_id, name, shown,
        )
        ours = "starting"
    gpu_type: str | None = None
    gpu_count = 1
    gpu = raw.get("gpu")
    if isinstance(gpu, Mapping):
        gpu_type = _text(gpu.get("id"))
        count = gpu.get("count")
        if isinstance(count, int) and not isinstance(count, bool) and count >= 1:
            gpu_count = count
        elif count is not None:
            _warn_once(("gpu.count", pod_id), "RunPod reports pod %s with gpu.count %s: counting 1", pod_id, _kind(count))
    elif gpu is not None:
        _warn_once(("gpu", pod_id), "RunPod reports pod %s with gpu as %s: its GPU type is unknown", pod_id, _kind(gpu))
    cpu_flavor: str | None = None
    vcpu_count: int | None = None
    cpu = raw.get("cpu")
    if isinstance(cpu, Mapping):
        if gpu is None:
            gpu_count = 0  # a CPU pod
        cpu_flavor = _text(cpu.get("id"))
        vcpus = cpu.get("vcpuCount")
        if isinstance(vcpus, int) and not isinstance(vcpus, bool) and vcpus >= 1:
            vcpu_count = vcpus
        elif vcpus is not None:
            _warn_once(
                ("cpu.vcpuCount", pod_id), "RunPod reports pod %s with cpu.vcpuCount %s: unknown", pod_id, _kind(vcpus)
            )
    elif cpu is not None:
        _warn_once(
            ("cpu", pod_id), "RunPod reports pod %s with cpu as %s: its CPU flavor is unknown", pod_id, _kind(cpu)
        )
    cost = _price(raw.get("cost"))
    if cost is None and raw.get("cost") is not None:
        _warn_once(
            ("cost", pod_id), "RunPod reports pod %s with cost as %s: using the price list", pod_id, _kind(raw.get("cost"))
        )
    return Pod(
        id=pod_id,
        name=name,
        status=ours,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        cost_per_hr=cost,
        data_center=_text(raw.get("dataCenterId")),
        created_at=_parse_time(raw.get("createdAt")),
        started_at=_parse_time(raw.get("startedAt")),
        uptime_s=_uptime(raw.get("runtime")),
        cpu_flavor=cpu_flavor,
        vcpu_count=vcpu_count,
    )


def _pod_list(body: Any) -> list[Pod]:
    """``GET /v2/pods``: ``{"pods": [...]}``; a pod that cannot be ours (no id or name) is skipped with a warning."""
    pods: list[Pod] = []
    for raw in _list(_object(body, "the answer").get("pods"), "pods"):
        try:
            pods.append(pod_from_json(raw))
        except _Junk as junk:
            _warn_once(
                ("skipped", str(junk)),
                "GET /v2/pods: skipping a listed pod (%s): without an id and a name it cannot be one of ours",
                junk,
            )
    return pods


def create_body(request: PodRequest) -> dict[str, Any]:
    """The ``POST /v2/pods`` body for ``request`` (secure cloud, the network volume at its mount path).

    A CPU request sends ``cpu: {id, vcpuCount}`` and no ``gpu`` (v2 takes exactly one of them).
    """
    compute: dict[str, Any]
    if request.cpu_flavor is not None:
        compute = {"cpu": {"id": request.cpu_flavor, "vcpuCount": request.vcpu_count}}
    else:
        gpu: dict[str, Any] = {"id": request.gpu_type, "count": request.gpu_count}
        if request.cuda_versions:
            gpu["allowedCudaVersions"] = list(request.cuda_versions)
        compute = {"gpu": gpu}
    body: dict[str, Any] = {
        "name": request.name,
        "image": request.image,
        **compute,
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
    if request.registry_auth_id:
        body["registry"] = request.registry_auth_id
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
    """The ``podRentInterruptable`` input for ``request`` at ``bid_per_gpu`` (GPU pods only: ValueError for CPU)."""
    if request.cpu_flavor is not None:
        raise ValueError(f"pod {request.name!r}: a CPU pod cannot be spot (RunPod's spot is for GPUs only)")
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
    if request.data_center_ids:
        # One data center per spot create: the backend prices and bids per data center.
        data["dataCenterId"] = request.data_center_ids[0]
    if request.cuda_versions:
        data["allowedCudaVersions"] = list(request.cuda_versions)
    if request.registry_auth_id:
        data["containerRegistryAuthId"] = request.registry_auth_id
    if request.terminate_after is not None:
        data["terminateAfter"] = iso_utc(request.terminate_after)
    return data


def iso_utc(moment: datetime) -> str:
    """``moment`` as an ISO 8601 UTC timestamp with a ``Z`` (``2026-08-20T06:16:19Z``), as GraphQL takes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rest_url_from_env(env: Mapping[str, str]) -> str:
    """The REST base ``env`` names (see :meth:`RunPodApi.from_env`); :class:`ConfigError` for a versioned one."""
    ours = env.get(REST_URL_ENV, "").strip()
    if ours:
        return check_rest_base(ours, REST_URL_ENV)
    return DEFAULT_REST_URL  # runpodctl's RUNPOD_API_URL (with /v1 in it) is never ours


class RunPodApi:
    """A RunPod API client: one ``requests`` session, a timeout on every call, retries by idempotency.

    Args:
        api_key: Sent as ``Authorization: Bearer``; never logged.
        rest_url: REST base (``HPO_RUNPOD_REST_URL``), without a version (``/v2`` is in each path);
            one ending in ``/v1`` or ``/v2`` is refused (:class:`ConfigError`).
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
        self._rest = check_rest_base(rest_url)
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
        """A client configured from ``RUNPOD_API_KEY``, ``HPO_RUNPOD_REST_URL`` and ``RUNPOD_API_BASE_URL``.

        ``HPO_RUNPOD_REST_URL`` ending in a version (``/v1``, ``/v2``) is
        refused in one line. runpodctl's ``RUNPOD_API_URL`` (``…/v1``) is not
        ours: it is ignored.
        """
        env = os.environ if env is None else env
        key = env.get("RUNPOD_API_KEY", "").strip()
        if not key:
            raise AuthError("RUNPOD_API_KEY is not set: create an API key in RunPod's console and export it")
        return cls(
            key,
            rest_url=rest_url_from_env(env),
            graphql_base=env.get(GRAPHQL_BASE_ENV) or DEFAULT_GRAPHQL_BASE,
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
        return self._call("GET", "/v2/pods", parse=_pod_list, until=until)

    def get_pod(self, pod_id: str) -> Pod | None:
        """The pod, or None if RunPod does not know it (any more)."""
        return self._get_pod(pod_id, self._until())

    def _get_pod(self, pod_id: str, until: float) -> Pod | None:
        def parse(body: Any) -> Pod:
            pod = pod_from_json(body)
            if pod.id != pod_id:
                raise _Junk(f"asked for pod {pod_id!r}, got pod {pod.id!r}")
            return pod

        try:
            return self._call("GET", f"/v2/pods/{pod_id}", parse=parse, until=until)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def terminate_pod(self, pod_id: str) -> None:
        """Terminate the pod; a pod already gone (404) is success."""
        try:
            self._call("DELETE", f"/v2/pods/{pod_id}", parse=_any)
        except ApiError as exc:
            if exc.status != 404:
                raise

    def create_pod(self, request: PodRequest) -> Pod:
        """Create an on-demand pod through REST v2; returns once RunPod accepted it.

        Raises :class:`LaunchUnknownError` when the create may have made the
        pod and no lookup by name could tell (see the module docstring). An
        answer that is junk (not a pod) is a create that may have happened.
        """
        body = create_body(request)

        def post(until: float) -> Pod:
            return self._call("POST", "/v2/pods", json_body=body, parse=pod_from_json, retry=False, until=until)

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

        def parse(data: Any) -> str:
            pod_id = _object(data, "podRentInterruptable").get("id")
            if not isinstance(pod_id, str) or not pod_id.strip():
                raise _Junk(f"podRentInterruptable for {request.name!r} answered without a pod id ({_kind(pod_id)})")
            return pod_id

        def post(until: float) -> Pod:
            pod_id = self._graphql_call(
                query, field_name="podRentInterruptable", parse=parse, retry=False, until=until, creating=True
            )
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

        After a 5xx, junk or a lost answer, the pod is looked up by name:
        found, it is the answer; absent (the listing answered), the create may
        be posted again; no listing answering within the deadline:
        :class:`LaunchUnknownError`.
        """
        until = self._until()
        last: ApiUnavailableError | None = None
        for round_ in range(self._attempts):
            try:
                return post(until)
            except _MaybeDone as lost:
                last = lost.error
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
            f"{method} {path}: creating {name!r} kept failing (last: {last}); a lookup by name shows no such pod",
            method=method, path=path, status=last.status if last else None, detail=last.detail if last else "",
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

    def registries(self) -> dict[str, str]:
        """Container registry credentials of the account, id by name, from ``GET /v2/registries``."""

        def parse(body: Any) -> dict[str, str]:
            found: dict[str, str] = {}
            for index, raw in enumerate(_list(_object(body, "the answer").get("registries"), "registries")):
                raw = _object(raw, f"registries[{index}]")
                reg_id, name = raw.get("id"), raw.get("name")
                if not isinstance(reg_id, str) or not reg_id or not isinstance(name, str):
                    raise _Junk(f"registries[{index}] has no string id and name")
                found[name] = reg_id
            return found

        return self._call("GET", "/v2/registries", parse=parse)

    def spot_price(self, gpu_type: str, *, gpu_count: int = 1, data_center: str | None = None) -> GpuPrice:
        """Secure Cloud prices of ``gpu_type`` for ``gpu_count`` GPUs in ``data_center`` (GraphQL ``lowestPrice``).

        ``minimum_bid`` is that data center's floor (it moves as others bid);
        ``spot`` the listed spot price. Raises :class:`GraphQLGoneError` once
        GraphQL is retired, :class:`RequestRejectedError` for a type RunPod
        does not know.
        """
        lowest_input: dict[str, Any] = {"gpuCount": gpu_count, "secureCloud": True}
        if data_center:
            lowest_input["dataCenterId"] = data_center
        query = (
            "query { gpuTypes(input: {id: " + _gql(gpu_type) + "}) { id securePrice secureSpotPrice "
            "lowestPrice(input: " + _gql(lowest_input) + ") { minimumBidPrice uninterruptablePrice stockStatus } } }"
        )
        types = self._graphql_call(query, field_name="gpuTypes", parse=_gpu_types, retry=True)
        for raw in types:
            if raw.get("id") == gpu_type:
                lowest = raw.get("lowestPrice")
                lowest = lowest if isinstance(lowest, Mapping) else {}
                return GpuPrice(
                    gpu_type=gpu_type,
                    on_demand=_price(raw.get("securePrice")),
                    spot=_price(raw.get("secureSpotPrice")),
                    minimum_bid=_price(lowest.get("minimumBidPrice")),
                    stock=_text(lowest.get("stockStatus")),
                    data_center=data_center,
                )
        raise RequestRejectedError(f"RunPod does not know GPU type {gpu_type!r}", detail=gpu_type)

    def gpu_price(self, gpu_type: str) -> GpuPrice:
        """Secure Cloud on-demand and spot prices of ``gpu_type`` across data centers (one GPU)."""
        return self.spot_price(gpu_type)

    def on_demand_prices(self) -> dict[str, float]:
        """Secure Cloud on-demand $/GPU-hour per GPU type, from REST v2 ``GET /v2/catalog/gpus``.

        Types not sold in Secure Cloud are left out (the catalog prices them 0),
        and so is an entry whose price is not a number.
        """

        def parse(body: Any) -> dict[str, float]:
            prices: dict[str, float] = {}
            for raw in _list(_object(body, "the answer").get("gpus"), "gpus"):
                raw = _object(raw, "a GPU type")
                gpu_id = _text(raw.get("id"))
                price_table = raw.get("price")
                price = _price(price_table.get("secure")) if isinstance(price_table, Mapping) else None
                if gpu_id and raw.get("secure") is True and price is not None and price > 0:
                    prices[gpu_id] = price
            return prices

        return self._call("GET", "/v2/catalog/gpus", parse=parse)

    def cpu_prices(self) -> dict[str, float]:
        """Secure Cloud on-demand $/vCPU-hour per CPU flavor (``cpu3c``, ...), from ``GET /v2/catalog/cpus``.

        A pod of a flavor costs this times its vCPUs per hour. A catalog entry
        without a string ``id`` or a ``price.securePerVcpu`` that is a number
        >= 0 is left out with a warning; an answer that is not ``{"cpus": [...]}``
        is junk (retried, then :class:`ApiUnavailableError`).
        """

        def parse(body: Any) -> dict[str, float]:
            prices: dict[str, float] = {}
            for index, raw in enumerate(_list(_object(body, "the answer").get("cpus"), "cpus")):
                flavor = _text(raw.get("id")) if isinstance(raw, Mapping) else None
                table = raw.get("price") if isinstance(raw, Mapping) else None
                price = _price(table.get("securePerVcpu")) if isinstance(table, Mapping) else None
                if not flavor or price is None:
                    _warn_once(
                        ("cpus", str(index), _kind(raw)),
                        "GET /v2/catalog/cpus: skipping entry %d (%s without a string id and a price per vCPU)",
                        index, _kind(raw),
                    )
                    continue
                prices[flavor] = price
            return prices

        return self._call("GET", "/v2/catalog/cpus", parse=parse)

    def spot_prices(self) -> dict[str, float]:
        """Secure Cloud spot $/GPU-hour per GPU type, from GraphQL ``gpuTypes`` (v2 has no spot price)."""
        types = self._graphql_call(
            "query { gpuTypes { id secureSpotPrice } }", field_name="gpuTypes", parse=_gpu_types, retry=True
        )
        prices: dict[str, float] = {}
        for raw in types:
            gpu_id = _text(raw.get("id"))
            price = _price(raw.get("secureSpotPrice"))
            if gpu_id and price is not None and price > 0:
                prices[gpu_id] = price
        return prices

    def pod_billing(self, since: datetime) -> dict[str, float]:
        """USD billed per pod id since ``since``, from ``GET /v2/billing/pods`` (day buckets, summed).

        One call for the whole account: the records come per pod per bucket,
        and RunPod snaps the window to whole days, so a pod is either wholly
        in the answer or not at all. A malformed record makes the whole
        answer junk (retried, then :class:`ApiUnavailableError`): a bill with
        a record left out would read as money not spent.
        """
        start = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._call("GET", f"/v2/billing/pods?bucketSize=day&startTime={start}", parse=_billing)

    # -- network volumes (read-only; for `hpo check`) ------------------------------------

    def network_volumes(self) -> list[dict[str, Any]]:
        """The account's network volumes as ``{id, name, size_gb, data_center}``.

        From REST v2 ``GET /v2/network-volumes``; where that path is not served
        (404: an API without it, such as the fake), from GraphQL
        ``myself { networkVolumes }``, which has the same facts.
        """

        def one(raw: Any, data_center_key: str) -> dict[str, Any]:
            raw = _object(raw, "a network volume")
            volume_id = _text(raw.get("id"))
            if not volume_id:
                raise _Junk("a network volume has no id")
            size = _number(raw.get("size"))
            return {"id": volume_id, "name": _text(raw.get("name")), "size_gb": size,
                    "data_center": _text(raw.get(data_center_key))}

        def rest(body: Any) -> list[dict[str, Any]]:
            return [one(raw, "dataCenter") for raw in _list(_object(body, "the answer").get("networkVolumes"), "networkVolumes")]

        def graphql(data: Any) -> list[dict[str, Any]]:
            return [one(raw, "dataCenterId") for raw in _list(_object(data, "myself").get("networkVolumes") or [], "networkVolumes")]

        try:
            return self._call("GET", "/v2/network-volumes", parse=rest)
        except ApiError as exc:
            if exc.status != 404 or isinstance(exc, ApiUnavailableError):
                raise
        return self._graphql_call(
            "query { myself { networkVolumes { id name size dataCenterId } } }", field_name="myself", parse=graphql, retry=True
        )

    # -- account secrets (for the remote controller's API key) ------------------------------

    def secrets(self) -> dict[str, str]:
        """The account's secrets, id by name, from ``GET /v2/account/secrets`` (RunPod never returns values).

        An entry without a string ``id`` and ``name`` is skipped with a warning.
        """
        return self._call("GET", "/v2/account/secrets", parse=_secrets_by_name)

    def create_secret(self, name: str, value: str, description: str = "") -> str:
        """Create the secret ``name`` holding ``value``; returns its id.

        Never posted twice blindly: after a 5xx, junk or a lost answer the
        name is looked up, and a secret of that name is taken as this create's
        (its id is returned); absent, the create is posted again. ``value``
        never appears in a log line or an error.

        Raises:
            SecretExistsError: RunPod already has a secret of that name (409).
            RequestRejectedError: RunPod refused the name, the value or the description (400/422).
            ApiUnavailableError: RunPod kept failing, or no lookup answered after a create that may have worked.
        """
        body: dict[str, Any] = {"name": name, "value": value}
        if description:
            body["description"] = description
        path = "/v2/account/secrets"
        until = self._until()
        last: ApiUnavailableError | None = None
        for round_ in range(self._attempts):
            try:
                return self._call(
                    "POST", path, json_body=body, parse=_secret_id, retry=False, until=until, secret=value
                )
            except _MaybeDone as lost:
                last = lost.error
                made = self._secret_lookup(name, until, lost.error)
                if made is not None:
                    log.info("create of secret %s failed (%s), but it exists (%s): using it", name, lost.error, made)
                    return made
                log.warning("create of secret %s failed (%s) and no secret of that name exists", name, lost.error)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                if last is not None:  # an earlier try, answered 5xx, did make it
                    made = self._secret_lookup(name, until, last)
                    if made is not None:
                        return made
                raise SecretExistsError(
                    f"RunPod already has a secret named {name!r} ({exc}); update its value or delete it first",
                    name=name, method=exc.method, path=exc.path, status=exc.status, detail=exc.detail,
                ) from None
            wait = min(self._max_wait, 2.0)
            if round_ + 1 >= self._attempts or time.monotonic() + wait >= until:
                break
            self._sleep(wait)
        raise ApiUnavailableError(
            f"POST {path}: creating secret {name!r} kept failing (last: {last}); a lookup by name shows no such secret",
            method="POST", path=path, status=last.status if last else None, detail=last.detail if last else "",
        )

    def _secret_lookup(self, name: str, until: float, cause: ApiUnavailableError) -> str | None:
        """The id of secret ``name`` after a create that may have made it; ApiUnavailableError if no listing answers."""
        try:
            found = self._call("GET", "/v2/account/secrets", parse=_secrets_by_name, until=until)
        except ApiUnavailableError as exc:
            raise ApiUnavailableError(
                f"{cause} and no lookup by name has answered since ({exc}): secret {name!r} may exist; "
                f"list the secrets before creating it again",
                method=cause.method, path=cause.path, status=cause.status, detail=cause.detail,
            ) from None
        return found.get(name)

    def update_secret(self, secret_id: str, value: str) -> None:
        """Rotate secret ``secret_id``'s value (``PATCH``; pods see it when their container next starts).

        Retried like a read (setting the same value twice is harmless). A
        secret RunPod does not know raises :class:`ApiError` with status 404.
        ``value`` never appears in a log line or an error.
        """
        path = f"/v2/account/secrets/{quote(secret_id, safe='')}"
        self._call("PATCH", path, json_body={"value": value}, parse=_any, retry=True, secret=value)

    def delete_secret(self, secret_id: str) -> None:
        """Delete secret ``secret_id``; one already gone (404) is success."""
        try:
            self._call("DELETE", f"/v2/account/secrets/{quote(secret_id, safe='')}", parse=_any)
        except ApiError as exc:
            if exc.status != 404:
                raise

    # -- HTTP -----------------------------------------------------------------------------

    def _until(self) -> float:
        """The monotonic instant a call starting now must end by."""
        return time.monotonic() + self._deadline

    def _request_timeout(self, until: float) -> float:
        """Seconds one HTTP request may take: the per-request timeout, less where the deadline is nearer."""
        return min(self._timeout, max(1.0, until - time.monotonic()))

    def _send(
        self,
        method: str,
        path: str,
        what: str,
        idempotent: bool,
        until: float,
        *,
        json_body: Any = None,
        secret: str | None = None,
    ) -> _Answer:
        """One HTTP request, its body read in full; a transport failure becomes the exception its retry policy needs.

        The body is streamed and cut off once the try's timeout has passed
        since it began (a server trickling bytes never holds a call beyond
        it) or once it passes :data:`MAX_BODY_BYTES` (no answer of RunPod's
        is that big). Redirects are not followed: RunPod's API never
        redirects, and a proxy or portal that does is answering junk.
        """
        url = self._graphql if path == "/graphql" else self._rest + path
        timeout = self._request_timeout(until)
        began = time.monotonic()
        base = self._graphql if path == "/graphql" else self._rest
        try:
            response = self._session.request(
                method, url, json=json_body, timeout=timeout, stream=True, allow_redirects=False
            )
            try:
                body, unreadable = _read_body(response, began + timeout)
            finally:
                response.close()
        except _BodyTooSlow:
            error = ApiUnavailableError(
                f"{what}: RunPod's answer did not arrive in full within {timeout:.3g}s", method=method, path=path
            )
            if idempotent:
                raise _Transient(error) from None
            raise _MaybeDone(error) from None
        except _TRANSPORT_ERRORS as exc:
            error = ApiUnavailableError(
                f"{what}: cannot reach RunPod at {base} ({type(exc).__name__})", method=method, path=path
            )
            if idempotent or not _was_sent(exc):
                raise _Transient(error) from exc
            raise _MaybeDone(error) from exc
        except requests.RequestException as exc:  # a malformed URL and the like: retrying will not help
            text = _scrub(_one_line(str(exc)), secret)
            cause = None if secret else exc  # a traceback must not show an exception that may quote the value
            raise ApiError(f"{what}: {type(exc).__name__}: {text}", method=method, path=path) from cause
        return _Answer(
            status=response.status_code,
            reason=_one_line(str(response.reason or "")),
            content_type=_one_line(response.headers.get("Content-Type", ""), 60),
            retry_after=_retry_after(response.headers.get("Retry-After")),
            location=_one_line(response.headers.get("Location", ""), 120),
            body=body,
            unreadable=unreadable,
        )

    def _answered(
        self,
        answer: _Answer,
        method: str,
        path: str,
        what: str,
        idempotent: bool,
        parse: Callable[[Any], _T],
        secret: str | None = None,
    ) -> _T:
        """A 2xx (or stray 1xx/3xx) answer parsed by ``parse``; junk raises what its retry policy needs."""
        try:
            if answer.status >= 300 or answer.status < 200:
                where = f" to {answer.location}" if answer.location else ""
                raise _Junk(f"an unexpected redirect{where}" if answer.status >= 300 else "an interim status")
            return parse(_decode(answer))
        except _Junk as junk:
            said = _scrub(str(junk), secret)  # junk quotes the body: a proxy may have echoed the value sent
            error = ApiUnavailableError(
                f"{what}: RunPod answered {answer.status} with junk: {said}",
                method=method, path=path, status=answer.status, detail=said,
            )
            if idempotent:
                raise _Transient(error) from None
            raise _MaybeDone(error) from None

    def _call(
        self,
        method: str,
        path: str,
        *,
        parse: Callable[[Any], _T],
        json_body: Any = None,
        retry: bool | None = None,
        until: float | None = None,
        secret: str | None = None,
    ) -> _T:
        """One REST call with the retry policy of its method; returns what ``parse`` makes of the JSON (None if empty).

        ``parse`` raises :class:`_Junk` on a shape it does not accept; that
        try then counts as failed like a 5xx. ``retry=False`` is for creates
        only: a 5xx, junk or a lost answer raises :class:`_MaybeDone` for
        :meth:`_create_once` to resolve. ``secret`` is a value the body
        carries: no error raised may quote it (:func:`_scrub`).
        """
        idempotent = method in ("GET", "DELETE") if retry is None else retry
        until = self._until() if until is None else until
        what = f"{method} {path.split('?', 1)[0]}"

        def once() -> _T:
            answer = self._send(method, path, what, idempotent, until, json_body=json_body, secret=secret)
            if answer.status < 400:
                return self._answered(answer, method, path, what, idempotent, parse, secret)
            error = self._error(method, path, answer, secret=secret)
            if isinstance(error, ApiUnavailableError):  # 429 or 5xx
                if answer.status == 429 or idempotent:  # a 429 was not acted on: always safe to retry
                    raise _Transient(error, answer.retry_after)
                raise _MaybeDone(error)
            raise error

        return self._with_retries(once, until)

    def _graphql_call(
        self,
        query: str,
        *,
        field_name: str,
        parse: Callable[[Any], _T],
        retry: bool,
        until: float | None = None,
        creating: bool = False,
    ) -> _T:
        """One GraphQL call: ``data.<field_name>`` parsed by ``parse``; GraphQL's errors (HTTP 200) map by message.

        GraphQL answers failures with HTTP 200 and a message only, so the
        message decides: capacity -> :class:`CapacityError`; balance ->
        :class:`BalanceError`; the API retired (or HTTP 404/410 on
        ``/graphql``) -> :class:`GraphQLGoneError`. Anything else on a create
        (``creating``) is :class:`RequestRejectedError` when it names what
        every candidate shares (image, volume, credential), else
        :class:`CandidateRefusedError` (skip this candidate); on a query it is
        :class:`RequestRejectedError`.
        """
        until = self._until() if until is None else until
        what = f"GraphQL {field_name}"

        def read(body: Any) -> _T:
            body = _object(body, "the answer")
            errors = body.get("errors")
            if errors is not None and errors != []:
                message = _graphql_message(errors)
                args: dict[str, Any] = {"method": "POST", "path": "/graphql", "status": 200, "detail": message}
                text = f"RunPod {field_name}: {message}"
                if is_capacity_message(message):
                    raise CapacityError(text, **args)
                if "balance" in message.lower():
                    raise BalanceError(text, **args)
                if is_gone_message(message):
                    raise GraphQLGoneError(f"RunPod's GraphQL API is gone ({field_name}: {message})", **args)
                if creating and not fails_every_candidate(message):
                    raise CandidateRefusedError(text, **args)
                raise RequestRejectedError(text, **args)
            data = _object(body.get("data"), "data")
            if field_name not in data:
                raise _Junk(f"data has no {field_name}")
            return parse(data[field_name])

        def once() -> _T:
            answer = self._send("POST", "/graphql", what, retry, until, json_body={"query": query})
            if answer.status < 400:
                return self._answered(answer, "POST", "/graphql", what, retry, read)
            if answer.status in (404, 410):
                raise GraphQLGoneError(
                    f"RunPod's GraphQL API is gone ({what}: HTTP {answer.status} at {self._graphql})",
                    method="POST", path="/graphql", status=answer.status, detail=f"HTTP {answer.status}",
                )
            error = self._error("POST", "/graphql", answer)
            if isinstance(error, ApiUnavailableError):  # 429 or 5xx
                if answer.status == 429 or retry:
                    raise _Transient(error, answer.retry_after)
                raise _MaybeDone(error)
            raise error

        return self._with_retries(once, until)

    def _with_retries(self, once: Callable[[], _T], until: float) -> _T:
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
    def _error(method: str, path: str, answer: _Answer, *, secret: str | None = None) -> CloudError:
        """Turn a 4xx/5xx answer into the error its status code means (whatever shape its body has).

        ``secret``: a value the request carried; RunPod's text is kept only where it cannot be quoting it.
        """
        try:
            problem = _decode(answer)
        except _Junk:
            problem = None
        if not isinstance(problem, Mapping):
            problem = {}
        detail = ""
        for key in ("detail", "error", "message", "title"):
            if isinstance(problem.get(key), str) and problem[key].strip():
                detail = problem[key]
                break
        detail = _one_line(detail or answer.reason or f"HTTP {answer.status}")
        violations = problem.get("errors")
        if isinstance(violations, list) and violations:
            detail += "; " + "; ".join(
                _one_line(str(v.get("message", v) if isinstance(v, Mapping) else v), 120) for v in violations[:5]
            )
        detail = _scrub(detail, secret)
        status = answer.status
        text = f"{method} {path.split('?', 1)[0]}: {status} {detail}"
        args: _ErrorFields = {"method": method, "path": path, "status": status, "detail": detail}
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
        if status == 400 and path.startswith("/v2/account/secrets") and method in ("POST", "PATCH"):
            return RequestRejectedError(text, **args)  # a name or value RunPod's rules refuse
        if status == 429 or status >= 500:
            return ApiUnavailableError(text, **args)
        return ApiError(text, **args)


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer, read in full: what the parsers and the error mapping need of it."""

    status: int
    reason: str
    content_type: str
    retry_after: float | None
    location: str
    body: bytes
    #: Why the body could not be read as sent (too big, a broken encoding), or None.
    unreadable: str | None = None


class _BodyTooSlow(Exception):
    """The answer's body did not arrive in full within the try's timeout."""


def _read_body(response: requests.Response, stop_at: float) -> tuple[bytes, str | None]:
    """The whole body and None; or what was read and why it is unusable (too big, a broken content encoding).

    Reads whatever has arrived (``read1``), shrinking the socket's timeout to
    what is left before ``stop_at``, so a body that trickles in a byte at a
    time cannot hold the call past ``stop_at`` (:class:`_BodyTooSlow`).
    """
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            left = stop_at - time.monotonic()
            if left <= 0:
                raise _BodyTooSlow()
            _shrink_socket_timeout(raw, left)
            chunk = read1(65536, decode_content=True) if read1 is not None else raw.read(8192, decode_content=True)
            if not chunk:
                return b"".join(chunks), None
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return b"", f"a body over {MAX_BODY_BYTES // (1024 * 1024)} MB"
    except DecodeError as exc:
        return b"", f"a body whose content encoding is broken ({type(exc).__name__})"
    except (ReadTimeoutError, TimeoutError):
        if time.monotonic() >= stop_at - 0.01:
            raise _BodyTooSlow() from None
        raise requests.ConnectionError("read timed out") from None
    except (ProtocolError, OSError) as exc:
        raise requests.ConnectionError(f"{type(exc).__name__} while reading the answer") from None


def _shrink_socket_timeout(raw: Any, seconds: float) -> None:
    """Best effort: make the next read on the answer's socket wait at most ``seconds``."""
    sock = getattr(getattr(raw, "connection", None), "sock", None) or getattr(
        getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None), "_sock", None
    )
    if sock is not None:
        try:
            sock.settimeout(max(0.01, seconds))
        except OSError:
            pass


def _decode(answer: _Answer) -> Any:
    """The JSON of an answer (None if the body is empty); a body that is not JSON is :class:`_Junk`."""
    if answer.unreadable is not None:
        raise _Junk(answer.unreadable)
    if not answer.body:
        return None
    try:
        return json.loads(answer.body)
    except (ValueError, RecursionError):  # JSON, UTF-8 and nesting errors alike
        kind = f" ({answer.content_type})" if answer.content_type else ""
        raise _Junk(f"a body that is not JSON{kind}: {_snippet(answer.body)}") from None


def _secret_id(body: Any) -> str:
    """A created ``Secret``: its id (the rest is not needed); anything else is :class:`_Junk`."""
    secret_id = _object(body, "the secret").get("id")
    if not isinstance(secret_id, str) or not secret_id.strip():
        raise _Junk(f"the secret has no usable id ({_kind(secret_id)})")
    return secret_id


def _secrets_by_name(body: Any) -> dict[str, str]:
    """``GET /v2/account/secrets``: id by name; an entry without a string id and name is skipped with a warning."""
    found: dict[str, str] = {}
    for index, raw in enumerate(_list(_object(body, "the answer").get("secrets"), "secrets")):
        secret_id = _text(raw.get("id")) if isinstance(raw, Mapping) else None
        name = _text(raw.get("name")) if isinstance(raw, Mapping) else None
        if not secret_id or not name:
            _warn_once(
                ("secrets", str(index), _kind(raw)),
                "GET /v2/account/secrets: skipping entry %d (%s without a string id and name)", index, _kind(raw),
            )
            continue
        found[name] = secret_id
    return found


def _gpu_types(value: Any) -> list[Mapping[str, Any]]:
    """GraphQL ``gpuTypes``: a list of objects."""
    return [_object(raw, "a GPU type") for raw in _list(value, "gpuTypes")]


def _graphql_message(errors: Any) -> str:
    """The first message of GraphQL's ``errors`` (a list of objects with a ``message``), or :class:`_Junk`."""
    first = _object(_list(errors, "errors")[0], "errors[0]")
    message = first.get("message")
    if not isinstance(message, str) or not message.strip():
        raise _Junk(f"errors[0].message is {_kind(message)}")
    return _one_line(message)


def _billing(body: Any) -> dict[str, float]:
    """``GET /v2/billing/pods``: USD per pod id, summed over buckets; any malformed record is :class:`_Junk`."""
    billed: dict[str, float] = {}
    for index, record in enumerate(_list(_object(body, "the answer").get("records"), "records")):
        record = _object(record, f"records[{index}]")
        pod_id = record.get("podId")
        amount = _number(record.get("totalAmount"))
        if not isinstance(pod_id, str) or not pod_id:
            raise _Junk(f"records[{index}].podId is {_kind(pod_id)}")
        if amount is None:
            given = record.get("totalAmount")
            shown = "NaN or infinite" if _kind(given) == "a number" else f"{_kind(given)}, not a number"
            raise _Junk(f"records[{index}].totalAmount is {shown}")
        billed[pod_id] = billed.get(pod_id, 0.0) + amount
    return billed


def by_age(pod: Pod) -> tuple[float, str]:
    """Sort key: the oldest pod first (by creation time, then id; an undated pod last)."""
    created = pod.created_at.astimezone(UTC).timestamp() if pod.created_at is not None else math.inf
    return (created, pod.id)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a number of seconds; a date or junk is ignored)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return max(0.0, seconds) if seconds is not None and math.isfinite(seconds) else None
