"""The fake RunPod's own catalog, as RunPod publishes it: GPU types with prices, data centers, CUDA versions.

Plain data, kept apart from the project's config on purpose: the config's
lists of RunPod ids are tested against the fake, so the fake must not take
them from the config (a wrong id there then shows up as a refused create in
a test). Sources, as of 2026-08-20:

* GPU type ids: RunPod's REST v1 OpenAPI spec (``PodCreateInput.gpuTypeIds``,
  49 ids, spelling kept exactly, double spaces included, plus
  ``GPUTypeId``'s ``NVIDIA A100-SXM4-40GB``); v2's spec has no enum.
* Prices ($/GPU-hour; order: secure, community, secure spot, community spot;
  ``None`` = not offered in that cloud): the nine types of RUNPOD.md §6 carry
  the user's Feb 2026 Secure Cloud figures and the community figures noted
  there; every other figure is a placeholder of the right order (the fake only
  needs prices to be consistent, not current).
* Data centers: v1's ``PodCreateInput.dataCenterIds`` enum (26), then the
  data centers of docs.runpod.io ``storage/s3-api`` that enum lacks.
* CUDA versions: v1's ``PodCreateInput.allowedCudaVersions`` enum, newest first.
* CPU flavors: v1's ``PodCreateInput.cpuFlavorIds`` enum (cpu3c/3g/3m/5c/5g/5m), named and
  grouped as v2's ``CpuType`` examples name them ("Compute-Optimized", "Gen 3"). Prices and
  sizes are the fake's own figures (see :data:`CPU_ROWS`).
"""

from __future__ import annotations

GpuRow = tuple[str, str, int, float | None, float | None, float | None, float | None, int, str]
"""(id, display name, VRAM GB, secure, community, secure spot, community spot, max GPUs per pod, manufacturer)."""

# fmt: off
GPU_ROWS: tuple[GpuRow, ...] = (
    ("NVIDIA RTX A5000", "RTX A5000", 24, 0.27, 0.16, 0.14, 0.09, 8, "NVIDIA"),
    ("NVIDIA RTX A4000", "RTX A4000", 16, 0.25, 0.17, 0.16, 0.09, 8, "NVIDIA"),
    ("NVIDIA RTX 4000 Ada Generation", "RTX 4000 Ada", 20, 0.26, 0.2, 0.19, 0.1, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 3090", "RTX 3090", 24, 0.46, 0.22, 0.22, 0.11, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.59, 0.34, 0.29, 0.2, 8, "NVIDIA"),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe", 80, 1.39, 1.19, 0.6, 0.5, 8, "NVIDIA"),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, 1.49, 1.39, 0.79, 0.69, 8, "NVIDIA"),
    ("NVIDIA H100 PCIe", "H100 PCIe", 80, 2.39, 1.99, 1.35, 1.1, 8, "NVIDIA"),
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.69, 2.39, 1.5, 1.25, 8, "NVIDIA"),
    ("NVIDIA RTX 4000 SFF Ada Generation", "RTX 4000 Ada SFF", 20, None, 0.18, None, 0.09, 8, "NVIDIA"),
    ("AMD Instinct MI300X OAM", "MI300X", 192, 2.49, None, 1.49, None, 8, "AMD"),
    ("NVIDIA  A30", "A30", 24, None, 0.22, None, 0.11, 8, "NVIDIA"),
    ("NVIDIA A30", "A30", 24, None, 0.22, None, 0.11, 8, "NVIDIA"),
    ("NVIDIA RTX A30", "A30", 24, None, 0.22, None, 0.11, 8, "NVIDIA"),
    ("NVIDIA  RTX A4500", "RTX A4500", 20, 0.25, 0.19, 0.13, 0.1, 8, "NVIDIA"),
    ("NVIDIA RTX A4500", "RTX A4500", 20, 0.25, 0.19, 0.13, 0.1, 8, "NVIDIA"),
    ("NVIDIA A100-SXM4-40GB", "A100 SXM 40GB", 40, 1.19, 1.09, 0.65, 0.55, 8, "NVIDIA"),
    ("NVIDIA A40", "A40", 48, 0.4, 0.35, 0.2, 0.18, 8, "NVIDIA"),
    ("NVIDIA A5000 Ada", "RTX 5000 Ada", 32, 0.77, 0.65, 0.4, 0.33, 8, "NVIDIA"),
    ("NVIDIA B200", "B200", 180, 5.99, None, 3.59, None, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 3070", "RTX 3070", 8, None, 0.13, None, 0.07, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 3080", "RTX 3080", 10, None, 0.17, None, 0.09, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 3080 Ti", "RTX 3080 Ti", 12, None, 0.18, None, 0.09, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 3080TI", "RTX 3080 Ti", 12, None, 0.18, None, 0.09, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 3090 Ti", "RTX 3090 Ti", 24, None, 0.27, None, 0.14, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 4070 Ti", "RTX 4070 Ti", 12, None, 0.2, None, 0.1, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 4080", "RTX 4080", 16, None, 0.27, None, 0.14, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 4080 SUPER", "RTX 4080 SUPER", 16, None, 0.28, None, 0.14, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 5080", "RTX 5080", 16, 0.49, 0.33, 0.25, 0.17, 8, "NVIDIA"),
    ("NVIDIA GeForce RTX 5090", "RTX 5090", 32, 0.89, 0.69, 0.49, 0.35, 8, "NVIDIA"),
    ("NVIDIA H100 NVL", "H100 NVL", 94, 2.79, 2.59, 1.6, 1.4, 8, "NVIDIA"),
    ("NVIDIA H200", "H200 SXM", 141, 3.99, 3.59, 2.29, 1.99, 8, "NVIDIA"),
    ("NVIDIA H200 NVL", "H200 NVL", 143, 3.59, 3.29, 2.09, 1.79, 8, "NVIDIA"),
    ("NVIDIA L4", "L4", 24, 0.43, 0.28, 0.22, 0.14, 8, "NVIDIA"),
    ("NVIDIA L40", "L40", 48, 0.99, 0.69, 0.5, 0.35, 8, "NVIDIA"),
    ("NVIDIA L40S", "L40S", 48, 0.86, 0.79, 0.43, 0.4, 8, "NVIDIA"),
    ("NVIDIA RTX 2000 Ada Generation", "RTX 2000 Ada", 16, 0.24, 0.23, 0.12, 0.12, 8, "NVIDIA"),
    ("NVIDIA RTX 5000 Ada Generation", "RTX 5000 Ada", 32, 0.77, 0.65, 0.4, 0.33, 8, "NVIDIA"),
    ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada", 48, 0.77, 0.74, 0.39, 0.37, 8, "NVIDIA"),
    ("NVIDIA RTX A2000", "RTX A2000", 6, None, 0.12, None, 0.06, 8, "NVIDIA"),
    ("NVIDIA RTX A6000", "RTX A6000", 48, 0.49, 0.33, 0.25, 0.17, 8, "NVIDIA"),
    ("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "RTX PRO 6000 Max-Q", 96, 1.69, 1.59, 0.89, 0.8, 8, "NVIDIA"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX PRO 6000", 96, 1.79, 1.69, 0.95, 0.85, 8, "NVIDIA"),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "RTX PRO 6000 WK", 96, 1.69, 1.59, 0.89, 0.8, 8, "NVIDIA"),
    ("Tesla T4", "Tesla T4", 16, None, 0.14, None, 0.07, 8, "NVIDIA"),
    ("Tesla V100-FHHL-16GB", "Tesla V100 FHHL", 16, None, 0.19, None, 0.1, 8, "NVIDIA"),
    ("Tesla V100-PCIE-16GB", "Tesla V100 PCIe 16GB", 16, None, 0.19, None, 0.1, 8, "NVIDIA"),
    ("Tesla V100-PCIE-32GB", "Tesla V100 PCIe 32GB", 32, None, 0.23, None, 0.12, 8, "NVIDIA"),
    ("Tesla V100-SXM2-16GB", "Tesla V100 SXM2 16GB", 16, None, 0.24, None, 0.12, 8, "NVIDIA"),
    ("Tesla V100-SXM2-32GB", "Tesla V100 SXM2 32GB", 32, None, 0.29, None, 0.15, 8, "NVIDIA"),
)
# fmt: on

DATA_CENTERS_V1: tuple[str, ...] = (
    "EU-RO-1",
    "CA-MTL-1",
    "EU-SE-1",
    "US-IL-1",
    "EUR-IS-1",
    "EU-CZ-1",
    "US-TX-3",
    "EUR-IS-2",
    "US-KS-2",
    "US-GA-2",
    "US-WA-1",
    "US-TX-1",
    "CA-MTL-3",
    "EU-NL-1",
    "US-TX-4",
    "US-CA-2",
    "US-NC-1",
    "OC-AU-1",
    "US-DE-1",
    "EUR-IS-3",
    "CA-MTL-2",
    "AP-JP-1",
    "EUR-NO-1",
    "EU-FR-1",
    "US-KS-3",
    "US-GA-1",
)
"""v1's ``dataCenterIds`` enum, in the spec's order."""

DATA_CENTERS_S3_ONLY: tuple[str, ...] = (
    "US-MD-1",
    "US-MO-1",
    "US-MO-2",
    "US-NC-2",
    "US-NE-1",
)
"""Data centers with S3-compatible volumes (docs storage/s3-api) that v1's enum does not list."""

CUDA_VERSIONS: tuple[str, ...] = (
    "13.0",
    "12.9",
    "12.8",
    "12.7",
    "12.6",
    "12.5",
    "12.4",
    "12.3",
    "12.2",
    "12.1",
    "12.0",
    "11.8",
)
"""v1's ``allowedCudaVersions`` enum, newest first."""

CpuRow = tuple[str, str, str, int, int, float, float, float]
"""(id, name, group, min vCPUs, max vCPUs, GB of RAM per vCPU, secure $/vCPU-hour, serverless $/vCPU-hour)."""

# The fake's figures, not RunPod's published prices: cpu3c's secure 0.04 and serverless 0.03
# per vCPU-hour are the values of the CpuType example in RunPod's v2 spec (GET /v2/catalog/cpus);
# the others are placeholders of the right order (General Purpose a bit more, Memory-Optimized
# more, Gen 5 more than Gen 3). RAM per vCPU: c 2 GB, g 4 GB, m 8 GB.
# fmt: off
CPU_ROWS: tuple[CpuRow, ...] = (
    ("cpu3c", "Compute-Optimized", "Gen 3", 2, 32, 2.0, 0.04, 0.03),
    ("cpu3g", "General Purpose", "Gen 3", 2, 32, 4.0, 0.05, 0.04),
    ("cpu3m", "Memory-Optimized", "Gen 3", 2, 32, 8.0, 0.07, 0.055),
    ("cpu5c", "Compute-Optimized", "Gen 5", 2, 32, 2.0, 0.05, 0.04),
    ("cpu5g", "General Purpose", "Gen 5", 2, 32, 4.0, 0.06, 0.05),
    ("cpu5m", "Memory-Optimized", "Gen 5", 2, 32, 8.0, 0.085, 0.07),
)
# fmt: on
