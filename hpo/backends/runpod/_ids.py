"""The RunPod identifiers studies.yaml may name: GPU types, data centers, CUDA versions.

RunPod rejects a whole create request for one unknown id, and accepts lowercase
data-center ids that then break placement, so the config refuses both up front
instead of finding out from a 400 after the study has started.

Sources (copies as of 2026-08-20, in ``/work/shared/runpod/``):

* ``openapi-v1.json``: ``components.schemas.PodCreateInput.properties.gpuTypeIds``
  (49 ids, spelling kept exactly, including the odd double spaces RunPod
  publishes) plus ``components.schemas.GPUTypeId`` (adds ``NVIDIA A100-SXM4-40GB``);
  ``PodCreateInput.properties.dataCenterIds`` (26 ids);
  ``PodCreateInput.properties.allowedCudaVersions`` (12 versions).
* ``openapi-v2.json`` has no enum for any of these (plain strings, CUDA
  versions as ``major.minor``), so v1's enums are the only published lists.
* docs.runpod.io ``storage/s3-api`` (see RUNPOD.md §4): the data centers of the
  S3-compatible volume API, five of which are missing from v1's enum.

Refresh these by hand when RunPod adds hardware; an id missing here is refused
with a message naming this file.
"""

from __future__ import annotations

GPU_TYPE_IDS: frozenset[str] = frozenset(
    {
        "AMD Instinct MI300X OAM",
        "NVIDIA  A30",
        "NVIDIA  RTX A4500",
        "NVIDIA A100 80GB PCIe",
        "NVIDIA A100-SXM4-40GB",
        "NVIDIA A100-SXM4-80GB",
        "NVIDIA A30",
        "NVIDIA A40",
        "NVIDIA A5000 Ada",
        "NVIDIA B200",
        "NVIDIA GeForce RTX 3070",
        "NVIDIA GeForce RTX 3080",
        "NVIDIA GeForce RTX 3080 Ti",
        "NVIDIA GeForce RTX 3080TI",
        "NVIDIA GeForce RTX 3090",
        "NVIDIA GeForce RTX 3090 Ti",
        "NVIDIA GeForce RTX 4070 Ti",
        "NVIDIA GeForce RTX 4080",
        "NVIDIA GeForce RTX 4080 SUPER",
        "NVIDIA GeForce RTX 4090",
        "NVIDIA GeForce RTX 5080",
        "NVIDIA GeForce RTX 5090",
        "NVIDIA H100 80GB HBM3",
        "NVIDIA H100 NVL",
        "NVIDIA H100 PCIe",
        "NVIDIA H200",
        "NVIDIA H200 NVL",
        "NVIDIA L4",
        "NVIDIA L40",
        "NVIDIA L40S",
        "NVIDIA RTX 2000 Ada Generation",
        "NVIDIA RTX 4000 Ada Generation",
        "NVIDIA RTX 4000 SFF Ada Generation",
        "NVIDIA RTX 5000 Ada Generation",
        "NVIDIA RTX 6000 Ada Generation",
        "NVIDIA RTX A2000",
        "NVIDIA RTX A30",
        "NVIDIA RTX A4000",
        "NVIDIA RTX A4500",
        "NVIDIA RTX A5000",
        "NVIDIA RTX A6000",
        "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
        "NVIDIA RTX PRO 6000 Blackwell Server Edition",
        "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
        "Tesla T4",
        "Tesla V100-FHHL-16GB",
        "Tesla V100-PCIE-16GB",
        "Tesla V100-PCIE-32GB",
        "Tesla V100-SXM2-16GB",
        "Tesla V100-SXM2-32GB",
    }
)
"""Every ``gpuTypeId`` RunPod's v1 OpenAPI spec lists (union of its two enums)."""

GPU_VENDOR_PREFIXES: tuple[str, ...] = ("NVIDIA GeForce ", "NVIDIA ", "Tesla ", "AMD Instinct ")
"""Prefixes people leave out ("RTX A5000"); suggestions also match the id without them."""

S3_DATA_CENTER_IDS: frozenset[str] = frozenset(
    {
        "EU-CZ-1",
        "EU-RO-1",
        "EUR-IS-1",
        "EUR-NO-1",
        "US-CA-2",
        "US-GA-2",
        "US-IL-1",
        "US-KS-2",
        "US-MD-1",
        "US-MO-1",
        "US-MO-2",
        "US-NC-1",
        "US-NC-2",
        "US-NE-1",
        "US-WA-1",
    }
)
"""Data centers whose network volumes the S3-compatible API serves (docs storage/s3-api)."""

DATA_CENTER_IDS: frozenset[str] = (
    frozenset(
        {
            "AP-JP-1",
            "CA-MTL-1",
            "CA-MTL-2",
            "CA-MTL-3",
            "EU-CZ-1",
            "EU-FR-1",
            "EU-NL-1",
            "EU-RO-1",
            "EU-SE-1",
            "EUR-IS-1",
            "EUR-IS-2",
            "EUR-IS-3",
            "EUR-NO-1",
            "OC-AU-1",
            "US-CA-2",
            "US-DE-1",
            "US-GA-1",
            "US-GA-2",
            "US-IL-1",
            "US-KS-2",
            "US-KS-3",
            "US-NC-1",
            "US-TX-1",
            "US-TX-3",
            "US-TX-4",
            "US-WA-1",
        }
    )
    # v1's enum predates some data centers the S3 docs name; a volume there is real.
    | S3_DATA_CENTER_IDS
)
"""Known data-center ids: v1's ``dataCenterIds`` enum plus the S3 API's list."""

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
"""v1's ``allowedCudaVersions`` enum, newest first (a tuple so messages list them in order)."""
