"""What the fake RunPod sells: GPU types and CPU flavors with prices, data centers, CUDA versions, RunPod's texts.

The data itself (ids, prices, data centers, CUDA versions) lives in
:mod:`hpo.fake_runpod._catalog_data`, taken from RunPod's published catalog
and never from the project's config, so a wrong id in a study's config is
refused by the fake as RunPod would refuse it. GPU prices are $/GPU-hour,
``None`` meaning the type is not offered in that cloud; CPU flavors are priced
per vCPU-hour and sold in Secure Cloud only (v2's ``CpuType`` has no
community price). The spot floor (minimum bid) may move over time:
:func:`minimum_bid`. :class:`Compute` is what one pod runs on, either kind.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

from hpo.fake_runpod import _catalog_data

# RunPod's own wording (RUNPOD.md §1.6, §2): clients match on these, so they are verbatim.
NO_CAPACITY_ON_DEMAND = (
    "There are no longer any instances available with the requested specifications. Please refresh and try again."
)
NO_CAPACITY_SPOT = (
    "There are no longer any instances available with the request specifications. Please try again later."
)
SOMETHING_WENT_WRONG = "Something went wrong. Please try again later or contact support."
POD_NOT_FOUND_TO_TERMINATE = "pod not found to terminate"

DEFAULT_DATA_CENTER = "EU-RO-1"
KNOWN_DATA_CENTERS: frozenset[str] = frozenset(_catalog_data.DATA_CENTERS_V1 + _catalog_data.DATA_CENTERS_S3_ONLY)
OFFERED_CUDA_VERSIONS: tuple[str, ...] = _catalog_data.CUDA_VERSIONS  # newest first
DEFAULT_CUDA_VERSION = "12.8"

VCPUS_PER_GPU = 8
MEMORY_GB_PER_GPU = 32


@dataclass(frozen=True)
class GpuType:
    """One GPU type: identity, VRAM and per-GPU hourly prices per cloud (None = not offered there)."""

    id: str
    display_name: str
    memory_gb: int
    secure: float | None
    community: float | None
    secure_spot: float | None
    community_spot: float | None
    max_count: int = 8
    manufacturer: str = "NVIDIA"

    def on_demand_price(self, cloud: str) -> float | None:
        """$/GPU-hour on demand in ``cloud`` (SECURE, COMMUNITY, or ALL = the cheaper offered one)."""
        return _pick(cloud, self.secure, self.community)

    def spot_price(self, cloud: str) -> float | None:
        """Minimum spot bid per GPU in ``cloud`` (the spot price is the floor a bid must reach)."""
        return _pick(cloud, self.secure_spot, self.community_spot)

    def offered_in(self, cloud: str) -> bool:
        """Whether on-demand pods of this type exist in ``cloud`` at all."""
        return self.on_demand_price(cloud) is not None


def _pick(cloud: str, secure: float | None, community: float | None) -> float | None:
    if cloud == "SECURE":
        return secure
    if cloud == "COMMUNITY":
        return community
    offered = [p for p in (secure, community) if p is not None]
    return min(offered) if offered else None


_GPU_TYPES: tuple[GpuType, ...] = tuple(GpuType(*row) for row in _catalog_data.GPU_ROWS)

GPU_TYPES: dict[str, GpuType] = {gpu.id: gpu for gpu in _GPU_TYPES}
"""Every GPU type the fake knows, by RunPod's ``gpuTypeId``."""


@dataclass(frozen=True)
class CpuFlavor:
    """One CPU flavor (v2 ``CpuType``): its vCPU range, RAM per vCPU and prices per vCPU-hour."""

    id: str
    name: str
    group: str
    vcpu_min: int
    vcpu_max: int
    ram_gb_per_vcpu: float
    secure_per_vcpu: float
    serverless_per_vcpu: float

    def vcpu_problem(self, vcpus: int) -> str | None:
        """Why a pod of this flavor cannot have ``vcpus`` vCPUs (a power of two within the range), or None."""
        if vcpus < 2 or vcpus & (vcpus - 1):
            return f"{vcpus} vCPUs requested; the count must be a power of two (2, 4, 8, ...)"
        if not self.vcpu_min <= vcpus <= self.vcpu_max:
            return f"{vcpus} vCPUs requested; a pod of {self.id} has {self.vcpu_min} to {self.vcpu_max}"
        return None


_CPU_FLAVORS: tuple[CpuFlavor, ...] = tuple(CpuFlavor(*row) for row in _catalog_data.CPU_ROWS)

CPU_FLAVORS: dict[str, CpuFlavor] = {flavor.id: flavor for flavor in _CPU_FLAVORS}
"""Every CPU flavor the fake knows, by RunPod's flavor id (``cpu3c``, ...)."""


@dataclass(frozen=True)
class Compute:
    """What one pod runs on: ``count`` GPUs of a GPU type, or ``count`` vCPUs of a CPU flavor (exactly one kind).

    The account prices, places and counts capacity through this, so a GPU pod
    and a CPU pod take the same path; only spot (GPU only) asks for :attr:`gpu`.
    """

    gpu: GpuType | None
    cpu: CpuFlavor | None
    count: int

    def __post_init__(self) -> None:
        if (self.gpu is None) == (self.cpu is None):
            raise ValueError("a pod runs on a GPU type or a CPU flavor, exactly one")

    @property
    def id(self) -> str:
        """The GPU type id or the CPU flavor id: the key of capacity and pool access."""
        return self.gpu.id if self.gpu is not None else self._cpu.id

    @property
    def gpu_count(self) -> int:
        """GPUs of the pod (0 for a CPU pod)."""
        return self.count if self.gpu is not None else 0

    @property
    def vcpus(self) -> int:
        """vCPUs of the pod (a GPU pod gets :data:`VCPUS_PER_GPU` per GPU)."""
        return VCPUS_PER_GPU * self.count if self.gpu is not None else self.count

    @property
    def memory_gb(self) -> int:
        """RAM of the pod in GB (a CPU pod: RAM per vCPU times vCPUs, rounded to whole GB)."""
        if self.gpu is not None:
            return MEMORY_GB_PER_GPU * self.count
        return round(self._cpu.ram_gb_per_vcpu * self.count)

    def on_demand_price(self, cloud: str) -> float | None:
        """$/hour for the whole pod on demand in ``cloud``; None where it is not sold there."""
        if self.gpu is not None:
            price = self.gpu.on_demand_price(cloud)
        else:
            price = self._cpu.secure_per_vcpu if cloud in ("SECURE", "ALL") else None
        return None if price is None else round(price * self.count, 6)

    @property
    def _cpu(self) -> CpuFlavor:
        assert self.cpu is not None
        return self.cpu


def pick_cuda_version(allowed: list[str] | None, minimum: str | None) -> str | None:
    """The CUDA version a host would report for these constraints, or None if no host has one.

    RunPod matches ``allowedCudaVersions`` exactly and answers a version no
    machine reports with a capacity error, not a fallback; the fake's hosts
    run every version in :data:`OFFERED_CUDA_VERSIONS`, and a pod lands on the
    newest one that fits.
    """
    candidates = [v for v in OFFERED_CUDA_VERSIONS if not allowed or v in allowed]
    if minimum is not None:
        floor = _version_key(minimum)
        candidates = [v for v in candidates if _version_key(v) >= floor]
    if not candidates:
        return None
    if not allowed and minimum is None:
        return DEFAULT_CUDA_VERSION
    return max(candidates, key=_version_key)


def _version_key(version: str) -> tuple[int, ...]:
    # "12.11" > "12.2": compare numerically, as RunPod says it does.
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class BidFloor:
    """How the spot floor (RunPod's ``minimumBidPrice``) moves on the fake clock, per GPU type, cloud and data center.

    RunPod's floor is a market: other users' bids move it, so a bid that was
    enough at create can be outbid later (and the pod preempted). The fake
    models that deterministically: the floor is the published spot price
    times ``1 + swing * sin(2*pi*t/period + phase)``, where the phase comes
    from ``seed``, the GPU type, the cloud and the data center (so data
    centers disagree, and a test can replay a run). ``swing`` 0 (the default)
    keeps the floor at the published spot price for ever.
    """

    swing: float = 0.0
    period_seconds: float = 3600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.swing < 1.0:
            raise ValueError(f"bid floor swing must be in [0, 1), got {self.swing}")
        if not self.period_seconds > 0:
            raise ValueError(f"bid floor period must be > 0 seconds, got {self.period_seconds}")

    def minimum_bid(self, gpu: GpuType, cloud: str, data_center: str | None, now: float) -> float | None:
        """The minimum bid per GPU at fake time ``now``; None where the type has no spot offer.

        ``cloud`` ALL is the cheaper of the two clouds; ``data_center`` None is
        the lowest floor over every data center (what ``lowestPrice`` without
        a ``dataCenterId`` answers).
        """
        if cloud == "ALL":
            floors = [self.minimum_bid(gpu, name, data_center, now) for name in ("SECURE", "COMMUNITY")]
            offered = [floor for floor in floors if floor is not None]
            return min(offered) if offered else None
        base = gpu.spot_price(cloud)
        if base is None or self.swing == 0.0:
            return base
        if data_center is None:
            return min(self._at(base, gpu, cloud, dc, now) for dc in KNOWN_DATA_CENTERS)
        return self._at(base, gpu, cloud, data_center, now)

    def _at(self, base: float, gpu: GpuType, cloud: str, data_center: str, now: float) -> float:
        # crc32, not hash(): the same phase in every process, whatever PYTHONHASHSEED says.
        phase = zlib.crc32(f"{self.seed}|{gpu.id}|{cloud}|{data_center}".encode()) / 2**32 * 2 * math.pi
        return round(base * (1.0 + self.swing * math.sin(2 * math.pi * now / self.period_seconds + phase)), 3)
