"""What the fake RunPod sells: GPU types with prices, data centers, CUDA versions, and RunPod's own texts.

Prices are $/GPU-hour. The types of RUNPOD.md §6 carry the user's Feb 2026
Secure Cloud figures (on-demand and spot) and the community figures the user
noted; every other figure is a plausible placeholder of the same order (the
fake only needs prices to be consistent, not current). ``None`` means the
type is not offered in that cloud (e.g. consumer cards are Community only).
Data-center ids and CUDA versions come from the project's list of RunPod ids,
so the fake accepts exactly what a study's config accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpo.config._runpod_ids import CUDA_VERSIONS, DATA_CENTER_IDS

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
KNOWN_DATA_CENTERS: frozenset[str] = DATA_CENTER_IDS
OFFERED_CUDA_VERSIONS: tuple[str, ...] = CUDA_VERSIONS  # newest first
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


def _gpu(
    gpu_id: str,
    name: str,
    memory: int,
    secure: float | None,
    community: float | None,
    secure_spot: float | None,
    community_spot: float | None,
    max_count: int = 8,
    manufacturer: str = "NVIDIA",
) -> GpuType:
    return GpuType(gpu_id, name, memory, secure, community, secure_spot, community_spot, max_count, manufacturer)


# fmt: off
_GPU_TYPES: tuple[GpuType, ...] = (
    # RUNPOD.md §6, the user's figures (community spot of A5000/4090/... are placeholders).
    _gpu("NVIDIA RTX A5000", "RTX A5000", 24, 0.27, 0.16, 0.14, 0.09),
    _gpu("NVIDIA RTX A4000", "RTX A4000", 16, 0.25, 0.17, 0.16, 0.09),
    _gpu("NVIDIA RTX 4000 Ada Generation", "RTX 4000 Ada", 20, 0.26, 0.20, 0.19, 0.10),
    _gpu("NVIDIA GeForce RTX 3090", "RTX 3090", 24, 0.46, 0.22, 0.22, 0.11),
    _gpu("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.59, 0.34, 0.29, 0.20),
    _gpu("NVIDIA A100 80GB PCIe", "A100 PCIe", 80, 1.39, 1.19, 0.60, 0.50),
    _gpu("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, 1.49, 1.39, 0.79, 0.69),
    _gpu("NVIDIA H100 PCIe", "H100 PCIe", 80, 2.39, 1.99, 1.35, 1.10),
    _gpu("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.69, 2.39, 1.50, 1.25),
    _gpu("NVIDIA RTX 4000 SFF Ada Generation", "RTX 4000 Ada SFF", 20, None, 0.18, None, 0.09),
    # Placeholders of the right order for every other id RunPod publishes.
    _gpu("AMD Instinct MI300X OAM", "MI300X", 192, 2.49, None, 1.49, None, 8, "AMD"),
    _gpu("NVIDIA  A30", "A30", 24, None, 0.22, None, 0.11),
    _gpu("NVIDIA A30", "A30", 24, None, 0.22, None, 0.11),
    _gpu("NVIDIA RTX A30", "A30", 24, None, 0.22, None, 0.11),
    _gpu("NVIDIA  RTX A4500", "RTX A4500", 20, 0.25, 0.19, 0.13, 0.10),
    _gpu("NVIDIA RTX A4500", "RTX A4500", 20, 0.25, 0.19, 0.13, 0.10),
    _gpu("NVIDIA A100-SXM4-40GB", "A100 SXM 40GB", 40, 1.19, 1.09, 0.65, 0.55),
    _gpu("NVIDIA A40", "A40", 48, 0.40, 0.35, 0.20, 0.18),
    _gpu("NVIDIA A5000 Ada", "RTX 5000 Ada", 32, 0.77, 0.65, 0.40, 0.33),
    _gpu("NVIDIA B200", "B200", 180, 5.99, None, 3.59, None),
    _gpu("NVIDIA GeForce RTX 3070", "RTX 3070", 8, None, 0.13, None, 0.07),
    _gpu("NVIDIA GeForce RTX 3080", "RTX 3080", 10, None, 0.17, None, 0.09),
    _gpu("NVIDIA GeForce RTX 3080 Ti", "RTX 3080 Ti", 12, None, 0.18, None, 0.09),
    _gpu("NVIDIA GeForce RTX 3080TI", "RTX 3080 Ti", 12, None, 0.18, None, 0.09),
    _gpu("NVIDIA GeForce RTX 3090 Ti", "RTX 3090 Ti", 24, None, 0.27, None, 0.14),
    _gpu("NVIDIA GeForce RTX 4070 Ti", "RTX 4070 Ti", 12, None, 0.20, None, 0.10),
    _gpu("NVIDIA GeForce RTX 4080", "RTX 4080", 16, None, 0.27, None, 0.14),
    _gpu("NVIDIA GeForce RTX 4080 SUPER", "RTX 4080 SUPER", 16, None, 0.28, None, 0.14),
    _gpu("NVIDIA GeForce RTX 5080", "RTX 5080", 16, 0.49, 0.33, 0.25, 0.17),
    _gpu("NVIDIA GeForce RTX 5090", "RTX 5090", 32, 0.89, 0.69, 0.49, 0.35),
    _gpu("NVIDIA H100 NVL", "H100 NVL", 94, 2.79, 2.59, 1.60, 1.40),
    _gpu("NVIDIA H200", "H200 SXM", 141, 3.99, 3.59, 2.29, 1.99),
    _gpu("NVIDIA H200 NVL", "H200 NVL", 143, 3.59, 3.29, 2.09, 1.79),
    _gpu("NVIDIA L4", "L4", 24, 0.43, 0.28, 0.22, 0.14),
    _gpu("NVIDIA L40", "L40", 48, 0.99, 0.69, 0.50, 0.35),
    _gpu("NVIDIA L40S", "L40S", 48, 0.86, 0.79, 0.43, 0.40),
    _gpu("NVIDIA RTX 2000 Ada Generation", "RTX 2000 Ada", 16, 0.24, 0.23, 0.12, 0.12),
    _gpu("NVIDIA RTX 5000 Ada Generation", "RTX 5000 Ada", 32, 0.77, 0.65, 0.40, 0.33),
    _gpu("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada", 48, 0.77, 0.74, 0.39, 0.37),
    _gpu("NVIDIA RTX A2000", "RTX A2000", 6, None, 0.12, None, 0.06),
    _gpu("NVIDIA RTX A6000", "RTX A6000", 48, 0.49, 0.33, 0.25, 0.17),
    _gpu("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "RTX PRO 6000 Max-Q", 96, 1.69, 1.59, 0.89, 0.80),
    _gpu("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX PRO 6000", 96, 1.79, 1.69, 0.95, 0.85),
    _gpu("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "RTX PRO 6000 WK", 96, 1.69, 1.59, 0.89, 0.80),
    _gpu("Tesla T4", "Tesla T4", 16, None, 0.14, None, 0.07),
    _gpu("Tesla V100-FHHL-16GB", "Tesla V100 FHHL", 16, None, 0.19, None, 0.10),
    _gpu("Tesla V100-PCIE-16GB", "Tesla V100 PCIe 16GB", 16, None, 0.19, None, 0.10),
    _gpu("Tesla V100-PCIE-32GB", "Tesla V100 PCIe 32GB", 32, None, 0.23, None, 0.12),
    _gpu("Tesla V100-SXM2-16GB", "Tesla V100 SXM2 16GB", 16, None, 0.24, None, 0.12),
    _gpu("Tesla V100-SXM2-32GB", "Tesla V100 SXM2 32GB", 32, None, 0.29, None, 0.15),
)
# fmt: on

GPU_TYPES: dict[str, GpuType] = {gpu.id: gpu for gpu in _GPU_TYPES}
"""Every GPU type the fake knows, by RunPod's ``gpuTypeId``."""


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
