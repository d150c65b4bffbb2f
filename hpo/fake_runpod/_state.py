"""The fake RunPod account: pods and their lifecycle on the fake clock, billing, capacity, secrets, faults.

One :class:`Account` holds everything both APIs (REST v2 and GraphQL) see, so
a spot pod made through GraphQL shows up in ``GET /v2/pods`` and bills the
same balance. All of it sits behind one lock; :meth:`Account.tick` moves pods
along (PROVISIONING -> STARTING -> RUNNING, container restarts, SIGTERM then
SIGKILL on preemption, random preemptions, the zero-balance rule) and is
called every few milliseconds by the server's ticker thread and before each
request, so processes start and die on time whether or not anyone asks.
A pod runs on a GPU type or a CPU flavor (:class:`Compute`); both take the
same path through pricing, placement, capacity and billing.
"""

from __future__ import annotations

import logging
import math
import random
import re
import secrets
import signal
import string
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from hpo.fake_runpod._catalog import (
    CPU_FLAVORS,
    DEFAULT_DATA_CENTER,
    GPU_TYPES,
    KNOWN_DATA_CENTERS,
    NO_CAPACITY_ON_DEMAND,
    NO_CAPACITY_SPOT,
    BidFloor,
    Compute,
    GpuType,
    pick_cuda_version,
)
from hpo.fake_runpod._clock import FakeClock
from hpo.fake_runpod._errors import Refusal, Refused
from hpo.fake_runpod._processes import MAX_ENV_VARS, Container, container_env, env_problem, fresh_dir
from hpo.fake_runpod._secrets import SecretStore

log = logging.getLogger(__name__)

PROVISIONING = "PROVISIONING"
STARTING = "STARTING"
RUNNING = "RUNNING"
EXITED = "EXITED"
ERROR = "ERROR"
TERMINATED = "TERMINATED"
ACTIVE_STATUSES = frozenset({PROVISIONING, STARTING, RUNNING})

FAULT_KINDS: tuple[str, ...] = ("create_then_500", "server_error", "rate_limit", "list_error")
"""``create_then_500``: the next create (REST or GraphQL) makes and bills the pod, then answers 500;
``server_error``: the next API request answers 500 and does nothing;
``list_error``: the next ``GET /v2/pods`` answers 500 (a lookup failing while creates go through);
``rate_limit``: the next API request answers 429 with ``Retry-After: 1``.
Only requests made with an account key count (a pod's own calls never meet a fault).
A fault armed with ``seconds`` (:meth:`Account.inject_fault`) is a burst instead: every
matching request fails that way until the fake clock has moved on that many seconds (an outage)."""

_ID_ALPHABET = string.ascii_lowercase + string.digits

REST_URL_VARS: tuple[str, ...] = ("HPO_RUNPOD_REST_URL",)
"""Where this project's client reads its REST v2 base (our own name: runpodctl's ``RUNPOD_API_URL`` carries ``/v1``)."""


@dataclass(frozen=True)
class Volume:
    """A network volume: its RunPod id, the local folder standing in for it, and its data center."""

    id: str
    path: Path
    data_center_id: str
    name: str = ""
    size_gb: int = 100


@dataclass(frozen=True)
class Timing:
    """Fake-second durations of the lifecycle, and the random preemption rate."""

    provision_seconds: float = 10.0
    start_seconds: float = 5.0
    kill_grace_seconds: float = 5.0
    restart_delay_seconds: float = 2.0
    preempt_rate_per_hour: float = 0.0


@dataclass(frozen=True)
class PodRequest:
    """A create request as either API states it, in the account's own terms.

    ``cloud`` is SECURE, COMMUNITY or (GraphQL only) ALL; ``mount_path`` is
    where the network volume (``network_volume_id``) or the pod's own
    persistent volume (``persistent_size``) is mounted. A CPU pod (REST v2
    ``cpu``) names ``cpu_flavor_id`` and ``vcpu_count``, with ``gpu_type_id``
    empty and ``gpu_count`` 0; a GPU pod leaves ``cpu_flavor_id`` None.
    """

    name: str
    image: str
    gpu_type_id: str
    gpu_count: int = 1
    cloud: str = "SECURE"
    spot: bool = False
    bid_per_gpu: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    args: str = ""
    disk: int = 50
    ports: tuple[str, ...] = ()
    registry: str | None = None
    data_center_ids: tuple[str, ...] = ()
    network_volume_id: str | None = None
    persistent_size: int | None = None
    mount_path: str | None = None
    allowed_cuda_versions: tuple[str, ...] = ()
    min_cuda_version: str | None = None
    terminate_after: datetime | None = None
    cpu_flavor_id: str | None = None
    vcpu_count: int = 0


@dataclass(frozen=True)
class FakePodView:
    """A snapshot of one pod, for tests, benchmarks, the control API and both API renderers.

    Times are fake seconds (see :meth:`FakeRunPod.now`). ``cost_per_hr`` is
    the rate the pod bills while it bills (the v2 ``cost`` field reads 0.0
    once it is EXITED or TERMINATED, as RunPod's spec says). ``env`` is the
    env as given at create; ``pid`` is the running container's pid (its
    process group id too), ``pids`` every container pid the pod ever had.
    ``registry`` is the container registry credential id the create named
    (v2 ``registry``, GraphQL ``containerRegistryAuthId``); ``minimum_bid``
    is a spot pod's current floor per GPU where it runs (None on demand).
    A CPU pod has ``gpu_type`` None, ``gpu_count`` 0, its ``cpu_flavor`` and
    no ``cuda_version``; ``vcpu_count`` and ``memory_gb`` are the whole pod's
    (a GPU pod gets a fixed share per GPU). ``env`` keeps secret placeholders
    as given: values are substituted in the container's environment only.
    """

    id: str
    name: str
    status: str
    gpu_type: str | None
    gpu_count: int
    spot: bool
    cloud: str
    cost_per_hr: float
    billed_seconds: float
    billed_usd: float
    restarts: int
    env: dict[str, str]
    pid: int | None
    pids: tuple[int, ...]
    exit_codes: tuple[int, ...]
    created_at: float
    started_at: float | None
    container_started_at: float | None
    exited_at: float | None
    terminated_at: float | None
    stop_reason: str | None
    data_center_id: str
    volume_id: str | None
    mount_path: str | None
    cuda_version: str | None
    machine_id: str
    host_id: str
    api_key: str
    folder: Path
    log_path: Path
    billing_intervals: tuple[tuple[float, float | None], ...]
    last_status_change: str
    request: PodRequest
    registry: str | None = None
    minimum_bid: float | None = None
    cpu_flavor: str | None = None
    vcpu_count: int = 0
    memory_gb: int = 0


@dataclass(frozen=True)
class Principal:
    """Who a request speaks for: the account (``pod_id`` None) or one pod's scoped key."""

    pod_id: str | None = None

    @property
    def is_account(self) -> bool:
        """True for an account API key, False for a pod-scoped key."""
        return self.pod_id is None


PodCommand = Sequence[str] | Callable[[FakePodView], Sequence[str]]
"""The argv every pod's container runs, or a function of the pod giving it."""


@dataclass
class _Interval:
    """One stretch of billing in fake seconds; ``end`` None while it runs."""

    start: float
    end: float | None = None

    def seconds(self, now: float) -> float:
        return max(0.0, min(now, self.end if self.end is not None else now) - self.start)


@dataclass
class _Stop:
    reason: str
    sigterm_at: float
    kill_at: float
    killed: bool = False


@dataclass
class _Pod:
    id: str
    request: PodRequest
    compute: Compute
    cloud: str
    cost_per_hr: float
    data_center_id: str
    cuda_version: str | None
    machine_id: str
    host_id: str
    api_key: str
    folder: Path
    mount_dir: Path | None
    created_at: float
    status: str = PROVISIONING
    phase_until: float = 0.0
    started_at: float | None = None
    container: Container | None = None
    container_started_at: float | None = None
    next_start_at: float | None = None
    runs: int = 0
    pids: list[int] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    billing: list[_Interval] = field(default_factory=list)
    stopping: _Stop | None = None
    stop_reason: str | None = None
    exited_at: float | None = None
    terminated_at: float | None = None
    last_status_change: str = ""

    @property
    def log_path(self) -> Path:
        return self.folder / "container.log"

    def billed_seconds(self, now: float) -> float:
        return sum(interval.seconds(now) for interval in self.billing)

    def billed_usd(self, now: float) -> float:
        return self.cost_per_hr * self.billed_seconds(now) / 3600.0

    def is_billing(self) -> bool:
        return bool(self.billing) and self.billing[-1].end is None


class Account:
    """Everything one fake RunPod account holds; every public method is thread-safe."""

    def __init__(
        self,
        *,
        clock: FakeClock,
        volumes: Mapping[str, Volume],
        api_keys: set[str],
        timing: Timing,
        balance_usd: float,
        pod_command: PodCommand | None,
        workdir: Path,
        seed: int = 0,
        bid_floor: BidFloor | None = None,
        outbid_preemption: bool = True,
        registries: Mapping[str, str] | None = None,
        private_images: Sequence[str] = (),
    ) -> None:
        self.clock = clock
        self.bid_floor = bid_floor if bid_floor is not None else BidFloor(seed=seed)
        self.outbid_preemption = outbid_preemption
        self.registries: dict[str, str] = dict(registries or {})  # name -> id
        self.private_images: tuple[str, ...] = tuple(private_images)
        # Which APIs a pod's scoped key may use (RunPod does not document it; tests turn each off).
        self.pod_key_rest = True
        self.pod_key_graphql = True
        self.graphql_retired = False
        self.volumes = dict(volumes)
        self.api_keys = set(api_keys)
        self.timing = timing
        self.workdir = workdir
        self.pod_command: PodCommand = pod_command if pod_command is not None else [sys.executable, "-m", "hpo.agent"]
        self.api_url = ""  # set by the server once it listens; injected into pods
        self._lock = threading.RLock()
        self._pods: dict[str, _Pod] = {}
        self._pod_keys: dict[str, str] = {}
        self._capacity: dict[str, int | None] = {}
        self._denied: set[str] = set()
        self._faults: dict[str, int] = {kind: 0 for kind in FAULT_KINDS}
        self._fault_until: dict[str, float] = {}  # kind -> fake time a burst of it lasts until
        # Separate streams, so creating a pod does not shift the preemption dice.
        self._ids = random.Random(f"{seed}:ids")
        self._dice = random.Random(f"{seed}:preempt")
        self._balance_base = float(balance_usd)
        self._last_tick = clock.now()
        self._closed = False
        self.secrets = SecretStore(clock, seed)

    # ------------------------------------------------------------------ auth

    def principal(self, key: str | None) -> Principal | None:
        """Who ``key`` speaks for, or None if it is no key of this account (401)."""
        if not key:
            return None
        with self._lock:
            if key in self.api_keys:
                return Principal()
            pod_id = self._pod_keys.get(key)
            return Principal(pod_id) if pod_id is not None else None

    # ------------------------------------------------------------------ knobs

    def set_capacity(self, gpu_type_id: str, available: int | None) -> None:
        """How many more pods of a GPU type (or CPU flavor) can be placed (0 = sold out, None = unlimited)."""
        _known_compute_id(gpu_type_id)
        if available is not None and available < 0:
            raise ValueError(f"capacity must be >= 0 or None, got {available}")
        with self._lock:
            self._capacity[gpu_type_id] = available

    def capacity(self, gpu_type_id: str) -> int | None:
        """Pods of that type still placeable (None = unlimited)."""
        with self._lock:
            return self._capacity.get(gpu_type_id)

    def stock_level(self, gpu_type_id: str, cloud: str) -> str:
        """RunPod's stock word (None/Low/Medium/High) for a GPU type or CPU flavor in a cloud, off the capacity knob."""
        if _known_compute_id(gpu_type_id).on_demand_price(cloud) is None:  # not sold in that cloud
            return "None"
        left = self.capacity(gpu_type_id)
        if left is None or left >= 10:
            return "High"
        if left == 0:
            return "None"
        return "Low" if left <= 2 else "Medium"

    def set_pool_denied(self, gpu_type_id: str, denied: bool = True) -> None:
        """Deny (or allow again) this account access to a GPU type's (or CPU flavor's) pool."""
        _known_compute_id(gpu_type_id)
        with self._lock:
            if denied:
                self._denied.add(gpu_type_id)
            else:
                self._denied.discard(gpu_type_id)

    def inject_fault(self, kind: str, times: int = 1, *, seconds: float = 0.0) -> None:
        """Make the next ``times`` matching requests fail as ``kind`` (see :data:`FAULT_KINDS`).

        With ``seconds`` > 0, also every matching request for the next ``seconds``
        fake seconds (a burst: an outage, a rate-limit storm); a new burst of the
        same kind extends the current one rather than stacking.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose one of {', '.join(FAULT_KINDS)}")
        if times < 0:
            raise ValueError("times must be >= 0")
        if not seconds >= 0:  # NaN too
            raise ValueError("seconds must be >= 0")
        with self._lock:
            self._faults[kind] += times
            if seconds > 0:
                until = self.clock.now() + seconds
                self._fault_until[kind] = max(until, self._fault_until.get(kind, until))

    def fault_burst_left(self, kind: str) -> float:
        """Fake seconds the current burst of ``kind`` still lasts (0 when none)."""
        with self._lock:
            return max(0.0, self._fault_until.get(kind, 0.0) - self.clock.now())

    def take_fault(self, kind: str) -> bool:
        """Consume one pending fault of ``kind`` (a burst in progress is not consumed); True if there was one."""
        with self._lock:
            if self._fault_until.get(kind, -math.inf) > self.clock.now():
                return True
            if self._faults.get(kind, 0) > 0:
                self._faults[kind] -= 1
                return True
            return False

    def balance(self) -> float:
        """The account balance in USD now: what was set minus everything billed since."""
        with self._lock:
            now = self.clock.now()
            return self._balance_base - sum(pod.billed_usd(now) for pod in self._pods.values())

    def set_balance(self, usd: float) -> None:
        """Set the balance now; billing keeps drawing it down from there."""
        with self._lock:
            now = self.clock.now()
            self._balance_base = float(usd) + sum(pod.billed_usd(now) for pod in self._pods.values())

    def spend_per_hour(self) -> float:
        """USD per hour the account's billing pods cost together."""
        with self._lock:
            return sum(pod.cost_per_hr for pod in self._pods.values() if pod.is_billing())

    # ------------------------------------------------------------------ pods

    def create(self, request: PodRequest) -> FakePodView:
        """Place a pod or raise :class:`Refused`; the pod starts PROVISIONING and bills from now.

        Checks run in the order most useful to a caller walking its
        candidates: rules first (deterministic, 400), then pool access (403),
        balance (402), and capacity last (400 with RunPod's exact text).
        Capacity is counted in pods and is not given back when a pod ends.
        """
        with self._lock:
            self._tick_locked()
            _check_env(request.env)
            _check_image(request.image)
            self._check_registry(request)
            compute = self._check_compute(request)
            volume = self._check_volume(request)
            cloud = _resolve_cloud(request, compute, volume)
            data_center = self._data_center(request, volume)
            cost = self._price(request, compute, cloud, data_center)
            if compute.id in self._denied:
                raise Refused(Refusal.FORBIDDEN, f"access denied: this account cannot deploy {compute.id} pods")
            balance = self.balance()
            if balance <= 0:
                raise Refused(
                    Refusal.BALANCE, f"Insufficient balance: the account has ${balance:.2f}; add funds to deploy pods."
                )
            if not request.spot and balance < cost:
                # RunPod: an on-demand deploy needs at least one hour of credit (RUNPOD.md §3, Billing).
                raise Refused(
                    Refusal.BALANCE,
                    f"Insufficient balance: deploying this pod needs at least one hour of credit "
                    f"(${cost:.2f}/hr); the account has ${balance:.2f}. Add funds to deploy pods.",
                )
            no_capacity = Refused(Refusal.CAPACITY, NO_CAPACITY_SPOT if request.spot else NO_CAPACITY_ON_DEMAND)
            cuda: str | None = None  # a CPU host reports none (v2: null for CPU pods)
            if compute.gpu is not None:
                cuda = pick_cuda_version(list(request.allowed_cuda_versions), request.min_cuda_version)
                if cuda is None:
                    raise no_capacity
            left = self._capacity.get(compute.id)
            if left is not None:
                if left <= 0:
                    raise no_capacity
                self._capacity[compute.id] = left - 1
            pod = self._place(request, compute, volume, cloud, cost, cuda, data_center)
            self._tick_locked()  # zero-second phases take effect at once
            return self._view(pod, self.clock.now())

    def _check_compute(self, request: PodRequest) -> Compute:
        """What the pod runs on: its CPU flavor and vCPUs if it names one, else its GPU type and count."""
        if request.cpu_flavor_id is not None:
            flavor = CPU_FLAVORS.get(request.cpu_flavor_id)
            if flavor is None:
                raise Refused(Refusal.RULE, f"unknown CPU flavor {request.cpu_flavor_id!r}", "cpu_flavor")
            problem = flavor.vcpu_problem(request.vcpu_count)
            if problem is not None:
                raise Refused(Refusal.RULE, problem, "vcpu_count")
            compute = Compute(gpu=None, cpu=flavor, count=request.vcpu_count)
        else:
            gpu = GPU_TYPES.get(request.gpu_type_id)
            if gpu is None:
                raise Refused(Refusal.RULE, f"unknown GPU type {request.gpu_type_id!r}", "gpu_type")
            if not 1 <= request.gpu_count <= gpu.max_count:
                raise Refused(
                    Refusal.RULE,
                    f"{request.gpu_count} GPUs requested; a pod of {gpu.id} holds 1 to {gpu.max_count}",
                    "gpu_count",
                )
            compute = Compute(gpu=gpu, cpu=None, count=request.gpu_count)
        for dc in request.data_center_ids:
            if dc not in self._known_data_centers():
                raise Refused(Refusal.RULE, f"unknown data center {dc!r}", "data_center")
        return compute

    def _check_volume(self, request: PodRequest) -> Volume | None:
        if request.network_volume_id is None:
            return None
        volume = self.volumes.get(request.network_volume_id)
        if volume is None:
            raise Refused(Refusal.RULE, f"network volume {request.network_volume_id!r} not found", "volume")
        if request.cloud == "COMMUNITY":
            raise Refused(Refusal.RULE, "network volumes are only available in Secure Cloud", "cloud")
        if request.data_center_ids and volume.data_center_id not in request.data_center_ids:
            raise Refused(
                Refusal.RULE,
                f"network volume {volume.id} is in {volume.data_center_id}, which is not among the "
                f"requested data centers ({', '.join(request.data_center_ids)})",
                "data_center",
            )
        return volume

    def _check_registry(self, request: PodRequest) -> None:
        """Refuse a registry credential id the account does not have (RunPod cannot pull with it)."""
        if request.registry is not None and request.registry not in self.registries.values():
            raise Refused(Refusal.RULE, f"container registry auth {request.registry!r} not found", "registry")

    def _data_center(self, request: PodRequest, volume: Volume | None) -> str:
        """Where a pod lands: its volume's data center, else the first one asked for, else the default."""
        if volume is not None:
            return volume.data_center_id
        if request.data_center_ids:
            return request.data_center_ids[0]
        return next(iter(self.volumes.values())).data_center_id if self.volumes else DEFAULT_DATA_CENTER

    def minimum_bid(self, gpu_type_id: str, cloud: str, data_center: str | None) -> float | None:
        """The spot floor per GPU now (see :class:`BidFloor`); None where the type has no spot offer."""
        return self.bid_floor.minimum_bid(_known_gpu(gpu_type_id), cloud, data_center, self.clock.now())

    def registry_list(self) -> list[tuple[str, str]]:
        """The account's container registry credentials as (id, name), by name."""
        with self._lock:
            return sorted((reg_id, name) for name, reg_id in self.registries.items())

    def _price(self, request: PodRequest, compute: Compute, cloud: str, data_center: str) -> float:
        """$/h the pod will bill: the bid for spot (at least the current floor there), else the on-demand price."""
        no_capacity = Refused(Refusal.CAPACITY, NO_CAPACITY_SPOT if request.spot else NO_CAPACITY_ON_DEMAND)
        if not request.spot:
            price = compute.on_demand_price(cloud)
            if price is None:  # the type is not sold in that cloud: RunPod finds no machine
                raise no_capacity
            return price
        gpu = compute.gpu
        if gpu is None:  # spot exists for GPUs only (GraphQL podRentInterruptable)
            raise Refused(Refusal.RULE, "spot pods need a GPU type", "gpu_type")
        floor = self.bid_floor.minimum_bid(gpu, cloud, data_center, self.clock.now())
        if floor is None:
            raise no_capacity
        bid = request.bid_per_gpu or 0.0
        if bid + 1e-9 < floor:
            raise Refused(
                Refusal.RULE,
                f"Your bid of ${bid:.3f}/GPU/hr is below the current minimum bid of ${floor:.3f}/GPU/hr "
                f"for {gpu.id} in {data_center} ({cloud} cloud). Please increase your bid and try again.",
                "bid",
            )
        return round(bid * request.gpu_count, 6)

    def _place(
        self,
        request: PodRequest,
        compute: Compute,
        volume: Volume | None,
        cloud: str,
        cost: float,
        cuda: str | None,
        data_center: str,
    ) -> _Pod:
        now = self.clock.now()
        pod_id = self._new_pod_id()
        folder = self.workdir / pod_id
        folder.mkdir(parents=True, exist_ok=True)
        mount_dir: Path | None = None
        if volume is not None:
            mount_dir = volume.path
        elif request.persistent_size is not None and request.mount_path:
            # The pod's own volume disk: a folder of the pod's that survives container restarts.
            mount_dir = folder / "volume"
            mount_dir.mkdir(exist_ok=True)
        pod = _Pod(
            id=pod_id,
            request=request,
            compute=compute,
            cloud=cloud,
            cost_per_hr=cost,
            data_center_id=data_center,
            cuda_version=cuda,
            machine_id="".join(self._ids.choice(_ID_ALPHABET) for _ in range(12)),
            host_id=f"{pod_id}-{self._ids.getrandbits(32):08x}",
            api_key=f"rpa_pod_{secrets.token_hex(16)}",
            folder=folder,
            mount_dir=mount_dir,
            created_at=now,
            phase_until=now + self.timing.provision_seconds,
            billing=[_Interval(now)],
            last_status_change=f"Rented by User: {_human_time(self.clock, now)}",
        )
        self._pods[pod_id] = pod
        self._pod_keys[pod.api_key] = pod_id
        return pod

    def get(self, pod_id: str, *, include_terminated: bool = False) -> FakePodView | None:
        """One pod, or None if unknown (or terminated, unless asked for)."""
        with self._lock:
            self._tick_locked()
            pod = self._pods.get(pod_id)
            if pod is None or (pod.status == TERMINATED and not include_terminated):
                return None
            return self._view(pod, self.clock.now())

    def pods(self, *, include_terminated: bool = False) -> list[FakePodView]:
        """Every pod in creation order; terminated ones only if asked for (they vanish from RunPod's lists)."""
        with self._lock:
            self._tick_locked()
            now = self.clock.now()
            return [
                self._view(pod, now) for pod in self._pods.values() if include_terminated or pod.status != TERMINATED
            ]

    def terminate(self, pod_id: str, reason: str = "terminated") -> FakePodView:
        """Terminate now: SIGKILL the container's group, stop billing, revoke the pod's key."""
        with self._lock:
            pod = self._live_pod(pod_id)
            self._terminate_now(pod, self.clock.now(), reason)
            return self._view(pod, self.clock.now())

    def preempt(self, pod_id: str) -> FakePodView:
        """Spot preemption now: SIGTERM, SIGKILL after the grace period, then EXITED (never restarted)."""
        with self._lock:
            pod = self._live_pod(pod_id)
            if not pod.request.spot:
                raise Refused(Refusal.CONFLICT, f"pod {pod_id} is on-demand; only spot pods are preempted")
            if pod.status not in ACTIVE_STATUSES or pod.stopping is not None:
                raise Refused(Refusal.CONFLICT, f"pod {pod_id} is {pod.status}; only a live pod can be preempted")
            self._begin_stop(pod, self.clock.now(), "preempted")
            return self._view(pod, self.clock.now())

    def kill(self, pod_id: str) -> FakePodView:
        """SIGKILL the pod's running container group now, as the OOM killer would (409 if none runs).

        The pod itself lives on: RunPod restarts a container whose command
        ended, so it runs again after ``restart_delay_seconds``.
        """
        with self._lock:
            self._tick_locked()
            pod = self._live_pod(pod_id)
            container = pod.container
            if pod.status != RUNNING or container is None or container.poll() is not None:
                raise Refused(Refusal.CONFLICT, f"pod {pod_id} is {pod.status} with no running container to kill")
            container.kill()
            self._tick_locked()  # the pod notices its container ended (and schedules the restart)
            return self._view(pod, self.clock.now())

    def action(self, pod_id: str, action: str) -> FakePodView:
        """REST v2 ``/action``: start, stop, restart or terminate, if the pod's status allows it (else 409)."""
        with self._lock:
            self._tick_locked()
            pod = self._live_pod(pod_id)
            now = self.clock.now()
            allowed = allowed_actions(pod.status)
            if action not in allowed or (pod.stopping is not None and action != "terminate"):
                raise Refused(Refusal.CONFLICT, f"action {action!r} is not valid for a pod that is {pod.status}")
            if action == "terminate":
                self._terminate_now(pod, now, "terminated")
            elif action == "stop":
                self._begin_stop(pod, now, "stopped")
            elif action == "start":
                pod.status = STARTING
                pod.phase_until = now + self.timing.start_seconds
                pod.stop_reason = None
                pod.exited_at = None
                pod.billing.append(_Interval(now))
                pod.last_status_change = f"Started by User: {_human_time(self.clock, now)}"
            elif action == "restart":
                if pod.container is not None:
                    pod.container.kill()
                    pod.exit_codes.append(pod.container.exit_code if pod.container.exit_code is not None else -9)
                    pod.container = None
                pod.next_start_at = now
            self._tick_locked()
            return self._view(pod, self.clock.now())

    def tick(self) -> None:
        """Apply everything that fell due on the fake clock (transitions, restarts, kills, preemptions)."""
        with self._lock:
            self._tick_locked()

    def close(self) -> None:
        """SIGKILL every pod's container group and terminate every pod (the server is going away)."""
        with self._lock:
            now = self.clock.now()
            for pod in self._pods.values():
                if pod.container is not None:
                    pod.container.kill()
                    pod.container = None
                if pod.status != TERMINATED:
                    self._terminate_now(pod, now, "fake server stopped")
            self._closed = True

    # ------------------------------------------------------------------ internals

    def _known_data_centers(self) -> set[str]:
        return set(KNOWN_DATA_CENTERS) | {volume.data_center_id for volume in self.volumes.values()}

    def _live_pod(self, pod_id: str) -> _Pod:
        pod = self._pods.get(pod_id)
        if pod is None or pod.status == TERMINATED:
            raise Refused(Refusal.NOT_FOUND, "pod not found")
        return pod

    def _new_pod_id(self) -> str:
        while True:
            pod_id = "".join(self._ids.choice(_ID_ALPHABET) for _ in range(14))
            if pod_id not in self._pods:
                return pod_id

    def _tick_locked(self) -> None:
        if self._closed:
            return
        now = self.clock.now()
        elapsed = max(0.0, now - self._last_tick)
        self._last_tick = now
        for pod in list(self._pods.values()):
            try:
                self._advance(pod, now, elapsed)
            except Exception:  # one broken pod must not stop the others' clocks
                log.exception("fake RunPod: advancing pod %s failed", pod.id)
        self._enforce_balance(now)

    def _advance(self, pod: _Pod, now: float, elapsed: float) -> None:
        if pod.status == TERMINATED:
            return
        deadline = pod.request.terminate_after
        if deadline is not None and now >= self.clock.from_datetime(deadline):
            # RunPod's own deadline (podRentInterruptable ``terminateAfter``): the pod ends whoever forgot it.
            self._terminate_now(pod, now, "terminateAfter")
            return
        if pod.stopping is not None:
            self._progress_stop(pod, now)
            return
        if pod.status == PROVISIONING and now >= pod.phase_until and self._pull_fails(pod):
            pod.status = ERROR
            pod.stop_reason = "image pull failed"
            _close_billing(pod, now)
            pod.last_status_change = (
                f"Error response from daemon: pull access denied for {pod.request.image}, repository does not "
                "exist or may require 'docker login': denied: requested access to the resource is denied "
                "(no container registry credential on the pod)"
            )
            return
        if pod.status == PROVISIONING and now >= pod.phase_until:
            pod.status = STARTING
            pod.phase_until += self.timing.start_seconds
        if pod.status == STARTING and now >= pod.phase_until:
            pod.status = RUNNING
            if pod.started_at is None:
                pod.started_at = pod.phase_until
            pod.next_start_at = pod.phase_until
        if pod.status == RUNNING:
            self._manage_container(pod, now)
        rate = self.timing.preempt_rate_per_hour
        exposed = pod.request.spot and rate > 0 and elapsed > 0 and pod.status in ACTIVE_STATUSES
        # A Poisson process: the chance of at least one preemption in `elapsed` fake seconds.
        if exposed and pod.stopping is None and self._dice.random() < -math.expm1(-rate * elapsed / 3600.0):
            self._begin_stop(pod, now, "preempted")
        if self._outbid(pod, now):
            # Someone bid more than this pod pays: RunPod stops it (SIGTERM, then SIGKILL), as a preemption.
            self._begin_stop(pod, now, "outbid")

    def _outbid(self, pod: _Pod, now: float) -> bool:
        if not (self.outbid_preemption and pod.request.spot and pod.status in ACTIVE_STATUSES):
            return False
        if pod.stopping is not None or pod.request.bid_per_gpu is None or pod.compute.gpu is None:
            return False
        floor = self.bid_floor.minimum_bid(pod.compute.gpu, pod.cloud, pod.data_center_id, now)
        return floor is not None and pod.request.bid_per_gpu + 1e-9 < floor

    def _pull_fails(self, pod: _Pod) -> bool:
        """True when the pod's image is private (a ``private_images`` prefix) and the create named no credential."""
        image = pod.request.image
        return pod.request.registry is None and any(image.startswith(prefix) for prefix in self.private_images)

    def _manage_container(self, pod: _Pod, now: float) -> None:
        if pod.container is not None:
            code = pod.container.poll()
            if code is None:
                return
            # RunPod restarts a container whose command ended, whatever the exit code.
            pod.exit_codes.append(code)
            pod.container = None
            pod.container_started_at = None
            pod.next_start_at = now + self.timing.restart_delay_seconds
        if pod.next_start_at is not None and now >= pod.next_start_at:
            self._start_container(pod, now)

    def _start_container(self, pod: _Pod, now: float) -> None:
        pod.next_start_at = None
        pod.runs += 1
        view = self._view(pod, now)
        command = self.pod_command
        argv = list(command(view) if callable(command) else command)
        # RunPod substitutes {{ RUNPOD_SECRET_<name> }} as the container boots, with the secret's value
        # then: into this container's environment only (the pod, as listed, keeps the placeholder).
        env = container_env(
            self.secrets.substitute(pod.request.env),
            self._injected_env(pod),
            mount_path=pod.request.mount_path,
            mount_dir=pod.mount_dir,
        )
        try:
            pod.container = Container(argv, cwd=fresh_dir(pod.folder / "container"), env=env, log_path=pod.log_path)
        except (OSError, ValueError) as exc:
            # An image whose command cannot start crash-loops on RunPod; do the same. (The error names
            # no environment value: a secret's value must never reach the log.)
            with open(pod.log_path, "a", encoding="utf-8") as out:
                out.write(f"fake RunPod: cannot start {argv!r}: {type(exc).__name__}\n")
            pod.exit_codes.append(127)
            pod.next_start_at = now + self.timing.restart_delay_seconds
            return
        pod.container_started_at = now
        pod.pids.append(pod.container.pid)

    def _injected_env(self, pod: _Pod) -> dict[str, str]:
        """The variables RunPod sets in every pod (RUNPOD.md §3), plus the fake's own URLs."""
        env = {
            "RUNPOD_POD_ID": pod.id,
            "RUNPOD_API_KEY": pod.api_key,
            "RUNPOD_DC_ID": pod.data_center_id,
            "RUNPOD_POD_HOSTNAME": pod.host_id,
            "RUNPOD_GPU_COUNT": str(pod.compute.gpu_count),
            "RUNPOD_CPU_COUNT": str(pod.compute.vcpus),
            "PUBLIC_KEY": "",
        }
        if pod.cuda_version is not None:  # a GPU host's; a CPU pod has none
            env["CUDA_VERSION"] = pod.cuda_version
        if pod.request.network_volume_id is not None:
            env["RUNPOD_VOLUME_ID"] = pod.request.network_volume_id
        if self.api_url:
            # Fake only: RunPod's pods reach the real API by default; these point
            # code in the pod (the agent, the runpod SDK) at this fake instead.
            for name in REST_URL_VARS:
                env[name] = self.api_url
            env["RUNPOD_API_BASE_URL"] = self.api_url
        return env

    def _begin_stop(self, pod: _Pod, now: float, reason: str) -> None:
        if pod.status not in ACTIVE_STATUSES or pod.stopping is not None:
            return
        if pod.container is not None and pod.container.poll() is None:
            pod.container.signal_group(signal.SIGTERM)
            pod.stopping = _Stop(reason, now, now + self.timing.kill_grace_seconds)
            return
        if pod.container is not None and pod.container.exit_code is not None:
            pod.exit_codes.append(pod.container.exit_code)
        pod.container = None
        self._mark_exited(pod, now, reason)

    def _progress_stop(self, pod: _Pod, now: float) -> None:
        stop = pod.stopping
        assert stop is not None
        container = pod.container
        if container is not None and container.poll() is None:
            if now < stop.kill_at:
                return
            container.kill()  # the grace period is over: SIGKILL the group
        if container is not None and container.exit_code is not None:
            pod.exit_codes.append(container.exit_code)
        pod.container = None
        pod.stopping = None
        self._mark_exited(pod, now, stop.reason)

    def _mark_exited(self, pod: _Pod, now: float, reason: str) -> None:
        pod.status = EXITED
        pod.exited_at = now
        pod.stop_reason = reason
        pod.next_start_at = None
        pod.container_started_at = None
        _close_billing(pod, now)
        who = "Runpod" if reason in ("preempted", "outbid", "balance") else "User"
        pod.last_status_change = f"Exited by {who}: {_human_time(self.clock, now)}"

    def _terminate_now(self, pod: _Pod, now: float, reason: str) -> None:
        if pod.container is not None:
            pod.container.kill()
            if pod.container.exit_code is not None:
                pod.exit_codes.append(pod.container.exit_code)
            pod.container = None
        pod.stopping = None
        pod.status = TERMINATED
        pod.terminated_at = now
        pod.container_started_at = None
        pod.next_start_at = None
        if pod.stop_reason is None:
            pod.stop_reason = reason
        _close_billing(pod, now)
        self._pod_keys.pop(pod.api_key, None)  # a pod's key dies with it
        pod.last_status_change = f"Terminated: {_human_time(self.clock, now)}"

    def _enforce_balance(self, now: float) -> None:
        billing = [pod for pod in self._pods.values() if pod.is_billing()]
        if not billing:
            return
        balance = self._balance_base - sum(pod.billed_usd(now) for pod in self._pods.values())
        if balance > 0:
            return
        # RunPod at $0: pods with a network volume are stopped, the others terminated.
        for pod in billing:
            if pod.request.network_volume_id is not None:
                self._begin_stop(pod, now, "balance")
            else:
                self._terminate_now(pod, now, "balance")

    def _view(self, pod: _Pod, now: float) -> FakePodView:
        container = pod.container
        return FakePodView(
            id=pod.id,
            name=pod.request.name,
            status=pod.status,
            gpu_type=pod.compute.gpu.id if pod.compute.gpu is not None else None,
            gpu_count=pod.compute.gpu_count,
            spot=pod.request.spot,
            cloud=pod.cloud,
            cost_per_hr=pod.cost_per_hr,
            billed_seconds=pod.billed_seconds(now),
            billed_usd=pod.billed_usd(now),
            restarts=max(0, pod.runs - 1),
            env=dict(pod.request.env),
            pid=container.pid if container is not None and container.exit_code is None else None,
            pids=tuple(pod.pids),
            exit_codes=tuple(pod.exit_codes),
            created_at=pod.created_at,
            started_at=pod.started_at,
            container_started_at=pod.container_started_at,
            exited_at=pod.exited_at,
            terminated_at=pod.terminated_at,
            stop_reason=pod.stop_reason,
            data_center_id=pod.data_center_id,
            volume_id=pod.request.network_volume_id,
            mount_path=pod.request.mount_path,
            cuda_version=pod.cuda_version,
            machine_id=pod.machine_id,
            host_id=pod.host_id,
            api_key=pod.api_key,
            folder=pod.folder,
            log_path=pod.log_path,
            billing_intervals=tuple((interval.start, interval.end) for interval in pod.billing),
            last_status_change=pod.last_status_change,
            request=pod.request,
            registry=pod.request.registry,
            minimum_bid=(
                self.bid_floor.minimum_bid(pod.compute.gpu, pod.cloud, pod.data_center_id, now)
                if pod.request.spot and pod.compute.gpu is not None
                else None
            ),
            cpu_flavor=pod.compute.cpu.id if pod.compute.cpu is not None else None,
            vcpu_count=pod.compute.vcpus,
            memory_gb=pod.compute.memory_gb,
        )


def allowed_actions(status: str) -> list[str]:
    """The v2 ``actions`` a pod in ``status`` allows (from the spec's ``podAction`` description)."""
    if status == RUNNING:
        return ["stop", "restart", "terminate"]
    if status in (EXITED, ERROR):
        return ["start", "terminate"]
    if status in (PROVISIONING, STARTING):
        return ["stop", "terminate"]
    return []


def _resolve_cloud(request: PodRequest, compute: Compute, volume: Volume | None) -> str:
    """The cloud a pod lands in: SECURE with a network volume, else as asked; ALL picks the cheaper offered one."""
    if volume is not None:
        return "SECURE"
    if request.cloud != "ALL":
        return request.cloud
    gpu = compute.gpu
    prices: dict[str, float | None]
    if request.spot and gpu is not None:
        prices = {"SECURE": gpu.secure_spot, "COMMUNITY": gpu.community_spot}
    else:
        prices = {cloud: compute.on_demand_price(cloud) for cloud in ("SECURE", "COMMUNITY")}
    offered = sorted((price, name) for name, price in prices.items() if price is not None)
    return offered[0][1] if offered else "SECURE"


def _close_billing(pod: _Pod, now: float) -> None:
    if pod.is_billing():
        pod.billing[-1].end = now


def _known_gpu(gpu_type_id: str) -> GpuType:
    gpu = GPU_TYPES.get(gpu_type_id)
    if gpu is None:
        raise ValueError(f"unknown GPU type {gpu_type_id!r}")
    return gpu


def _known_compute_id(compute_id: str) -> Compute:
    """One unit of a GPU type or a CPU flavor, by id (ValueError for neither): what the knobs are keyed by."""
    if compute_id in GPU_TYPES:
        return Compute(gpu=GPU_TYPES[compute_id], cpu=None, count=1)
    flavor = CPU_FLAVORS.get(compute_id)
    if flavor is None:
        raise ValueError(f"unknown GPU type or CPU flavor {compute_id!r}")
    return Compute(gpu=None, cpu=flavor, count=flavor.vcpu_min)


def _human_time(clock: FakeClock, fake_seconds: float) -> str:
    return clock.to_datetime(fake_seconds).strftime("%a %b %d %Y %H:%M:%S GMT+0000")


# A Docker image reference: [registry[:port]/]path[:tag][@digest], path components
# lowercase. RunPod's answer to a malformed one is not documented; a 400 naming
# the field, like its other rule checks, is the inferred behaviour.
_IMAGE_REFERENCE = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)


def _check_env(env: Mapping[str, str]) -> None:
    """Refuse a pod environment that names a variable a pod may not get (see ``env_problem``), the first one named."""
    if len(env) > MAX_ENV_VARS:
        raise Refused(Refusal.RULE, f"{len(env)} variables given; a pod takes at most {MAX_ENV_VARS}", "env")
    for name, value in env.items():
        problem = env_problem(name, value)
        if problem is not None:
            raise Refused(Refusal.RULE, problem, "env")


def _check_image(image: str) -> None:
    """Refuse an image reference Docker could never pull."""
    if not _IMAGE_REFERENCE.fullmatch(image or ""):
        raise Refused(Refusal.RULE, f"invalid image reference {image!r}", "image")
