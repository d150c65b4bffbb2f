"""The ``runpod`` backend's keys in studies.yaml: ``compute: {backend: runpod, ...}`` and ``volume: {id: ...}``.

RunPod refuses a whole create request for one unknown GPU type or data center,
and only after the study has started paying for its controller's time; these
models refuse such values when studies.yaml is loaded, and suggest the id the
user most likely meant (the ids are in :mod:`hpo.backends.runpod._ids`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import PlainValidator, ValidationInfo, field_validator

from hpo.backends.runpod._ids import CUDA_VERSIONS, DATA_CENTER_IDS, GPU_TYPE_IDS, GPU_VENDOR_PREFIXES
from hpo.config import (
    ComputeConfig,
    ConfigModel,
    Token,
    VolumeConfig,
    closest,
    fail,
    folder_path,
    hint,
    integer,
    list_of,
    show,
)
from hpo.volume import DirectoryVolume, Volume

# -- RunPod's ids and values ---------------------------------------------------------------


def _gpu_type(value: Any) -> str:
    if not isinstance(value, str):
        raise fail(f"must be a RunPod GPU type id such as 'NVIDIA RTX A5000' (got {show(value)})")
    if value in GPU_TYPE_IDS:
        return value
    options = sorted(GPU_TYPE_IDS)
    suggestion = hint(value, options, tails=GPU_VENDOR_PREFIXES, listing=None)
    if not suggestion:
        # "A100" is far from every full id, but names a family: offer its members.
        family = [gpu for gpu in options if value.strip().lower() in gpu.lower()][:4]
        if family:
            suggestion = "; did you mean one of " + ", ".join(repr(gpu) for gpu in family) + "?"
        else:
            suggestion = (
                "; RunPod's ids look like 'NVIDIA RTX A5000' (see hpo/backends/runpod/_ids.py)"
            )
    raise fail(f"unknown GPU type {show(value)}{suggestion}")


def _data_center(value: Any) -> str:
    if not isinstance(value, str):
        raise fail(f"must be a RunPod data-center id such as 'EU-RO-1' (got {show(value)})")
    if value in DATA_CENTER_IDS:
        return value
    if value.upper() in DATA_CENTER_IDS:
        # RunPod's API takes lowercase ids but then places nothing (dstack found out).
        raise fail(f"data-center ids are uppercase: use {value.upper()!r} (got {value!r})")
    options = sorted(DATA_CENTER_IDS)
    if closest(value, options) is not None:
        raise fail(f"unknown data center {value!r}{hint(value, options)}")
    raise fail(f"unknown data center {value!r}; known data centers: {', '.join(options)}")


def _cuda_version(value: Any) -> str:
    # YAML reads 12.4 as a float; accept it, since nobody quotes version numbers.
    if isinstance(value, float):
        value = repr(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        value = f"{value}.0"
    if value not in CUDA_VERSIONS:
        raise fail(f"unknown CUDA version {show(value)}; choose from {', '.join(CUDA_VERSIONS)}")
    return value


_PORT = re.compile(r"(\d{1,5})/(http|tcp)")


def _port(value: Any) -> str:
    match = _PORT.fullmatch(value) if isinstance(value, str) else None
    if match is None or not 1 <= int(match.group(1)) <= 65535:
        raise fail(f"must be a port like '8888/http' or '22/tcp' (got {show(value)})")
    return value


def _cloud(value: Any) -> Literal["SECURE"]:
    if value == "SECURE":
        return "SECURE"
    if isinstance(value, str) and value.upper() == "COMMUNITY":
        raise fail(
            f"must be SECURE (got {value!r}): network volumes attach only to Secure Cloud pods"
        )
    if isinstance(value, str) and value.upper() == "SECURE":
        raise fail(f"must be uppercase: use 'SECURE' (got {value!r})")
    raise fail(f"must be SECURE (got {show(value)})")


def _spot(value: Any) -> bool | Literal["prefer"]:
    if isinstance(value, bool) or value == "prefer":
        return value
    suggestion = hint(value, ["prefer"], listing=None)
    raise fail(f"must be true, false or prefer (got {show(value)}){suggestion}")


MAX_BID_USD = 100.0
"""The largest bid cap accepted, in USD per GPU-hour (RunPod's dearest GPU costs a few)."""


def _bid(value: Any) -> Literal["market", "floor"] | float:
    if value in ("market", "floor"):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 < value <= MAX_BID_USD:  # NaN fails both comparisons
            return float(value)
        raise fail(
            f"a bid cap must be a price in USD per GPU-hour above 0 and at most {MAX_BID_USD:g} (got {show(value)})"
        )
    suggestion = hint(value, ["market", "floor"], listing=None) if isinstance(value, str) else ""
    raise fail(
        f"must be market, floor or a cap in USD per GPU-hour such as 0.35 (got {show(value)}){suggestion}"
    )


GpuTypes = Annotated[
    tuple[str, ...], PlainValidator(list_of(_gpu_type, min_items=1, what="GPU type"))
]
DataCenters = Annotated[
    tuple[str, ...], PlainValidator(list_of(_data_center, min_items=1, what="data center"))
]
CudaVersions = Annotated[
    tuple[str, ...], PlainValidator(list_of(_cuda_version, min_items=1, what="CUDA version"))
]
Ports = Annotated[tuple[str, ...], PlainValidator(list_of(_port, what="port"))]
DataCenter = Annotated[str, PlainValidator(_data_center)]
Cloud = Annotated[Literal["SECURE"], PlainValidator(_cloud)]
Spot = Annotated[bool | Literal["prefer"], PlainValidator(_spot)]
Bid = Annotated[Literal["market", "floor"] | float, PlainValidator(_bid)]
GpuCount = Annotated[int, PlainValidator(integer(ge=1, le=8))]
MAX_CONTAINER_DISK_GB = 4000
"""RunPod documents no maximum for a pod's container disk (only >= 1); its largest hosts have a few TB."""
DiskGb = Annotated[int, PlainValidator(integer(ge=1, le=MAX_CONTAINER_DISK_GB))]

# -- the remote controller's pod -----------------------------------------------------------

CPU_FLAVORS = ("cpu3c", "cpu3g", "cpu3m", "cpu5c", "cpu5g", "cpu5m")
"""RunPod's CPU pod flavors (REST v2 ``cpu.id``; ``GET /v2/catalog/cpus``): generation 3 or 5,
compute-optimized (c), general purpose (g) or memory-optimized (m)."""

_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]{0,190}")


def _cpu_flavor(value: Any) -> str:
    if not isinstance(value, str) or value not in CPU_FLAVORS:
        raise fail(f"must be a RunPod CPU flavor (got {show(value)}){hint(value, CPU_FLAVORS)}")
    return value


def _vcpus(value: Any) -> int:
    count = integer(ge=2, le=32)(value)
    if count & (count - 1):
        raise fail(f"must be a power of two from 2 to 32, as RunPod sizes CPU pods (got {show(value)})")
    return count


def _secret_name(value: Any) -> str:
    if not isinstance(value, str) or not _SECRET_NAME.fullmatch(value) or value.upper().startswith("RUNPOD"):
        raise fail(
            "must be a RunPod secret name: a letter or _, then letters, digits and _.-/ (at most 191), "
            f"not starting with RUNPOD (got {show(value)})"
        )
    return value


class ControllerPod(ConfigModel):
    """The CPU pod that runs the study's controller under ``hpo run --remote`` (``compute.controller``).

    ``cpu`` and ``vcpus`` size it (RunPod bills ``vcpus`` times the flavor's
    price per vCPU-hour; the controller needs little: 2 vCPUs of ``cpu3c``);
    ``secret`` names the RunPod secret that holds the API key it creates and
    terminates pods with (``hpo secret set`` makes it).
    """

    cpu: Annotated[str, PlainValidator(_cpu_flavor)] = "cpu3c"
    vcpus: Annotated[int, PlainValidator(_vcpus)] = 2
    disk_gb: Annotated[int, PlainValidator(integer(ge=5, le=200))] = 20
    secret: Annotated[str, PlainValidator(_secret_name)] = "hpo_runpod_api_key"


# -- compute ---------------------------------------------------------------------------


class RunPodCompute(ComputeConfig):
    """Trials run as RunPod GPU pods (Secure Cloud, spot by default).

    ``gpu_types`` is in order of preference: the backend tries the next one
    when RunPod has no capacity for the current one. Pods go to the network
    volume's data center (the only place they can mount it); ``data_centers``,
    if given, must include it. ``bid`` is the spot bid per GPU-hour:
    ``market`` (the going spot rate there), ``floor`` (RunPod's minimum bid:
    cheapest, first outbid) or a cap in USD (the market rate, at most the cap;
    a GPU type whose minimum bid is above the cap is skipped).
    ``registry_auth`` names the container registry credential a private image
    needs (its id or its name in RunPod's console).
    """

    backend: Literal["runpod"] = "runpod"
    image: Token
    gpu_types: GpuTypes
    cloud: Cloud = "SECURE"
    spot: Spot = True
    gpu_count: GpuCount = 1
    data_centers: DataCenters | None = None
    cuda_versions: CudaVersions | None = None
    container_disk_gb: DiskGb = 50
    ports: Ports = ()
    bid: Bid = "market"
    registry_auth: Token | None = None
    controller: ControllerPod = ControllerPod()

    default_poll_interval: ClassVar[float] = 15.0  # RunPod's API is rate-limited
    volume_required: ClassVar[str | None] = (
        "runpod compute needs a RunPod network volume {id: <volume id>, data_center: <id>}"
    )

    def check_volume(self, volume: VolumeConfig) -> None:
        """A pod mounts only a RunPod network volume, and only in the volume's own data center."""
        if not isinstance(volume, RunPodVolume):
            raise fail(
                "runpod compute needs a RunPod network volume {id: ..., data_center: ...}, "
                f"not {volume.kind_text} (got {volume.shown()})",
                "volume",
            )
        allowed = self.data_centers
        if allowed is not None and list(allowed) != [volume.data_center]:
            # Pods are placed by the volume; a list that says otherwise misleads whoever reads it.
            raise fail(
                f"compute.data_centers ({', '.join(allowed)}) disagrees with volume.data_center "
                f"({volume.data_center!r}): a network volume attaches only to pods in its own "
                "data center; leave compute.data_centers out, or set it to "
                f"[{volume.data_center}]",
                "volume",
                "data_center",
            )


# -- volume ----------------------------------------------------------------------------


_VOLUME_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def _volume_id(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 64 or not _VOLUME_ID.fullmatch(value):
        raise fail(f"must be a RunPod network volume id such as 'a1b2c3d4e5' (got {show(value)})")
    return value


def _mount_path(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 4096 or not PurePosixPath(value).is_absolute():
        raise fail(f"must be an absolute path in the pod such as '/workspace' (got {show(value)})")
    return value


def _endpoint(value: Any) -> str:
    try:
        parts = urlsplit(value) if isinstance(value, str) and len(value) <= 2000 else None
    except ValueError:  # e.g. an unbalanced '[' in the host
        parts = None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.netloc:
        raise fail(
            "must be an http(s) URL such as 'https://s3api-eu-ro-1.runpod.io/' "
            f"(got {show(value)})"
        )
    return value


class RunPodVolume(VolumeConfig):
    """A RunPod network volume: mounted in every pod, reached from outside over S3."""

    kind_key: ClassVar[str] = "id"
    kind_text: ClassVar[str] = "a RunPod network volume"
    example: ClassVar[str] = "{id: <volume id>, data_center: <id>}"

    id: Annotated[str, PlainValidator(_volume_id)]
    data_center: DataCenter
    mount_path: Annotated[str, PlainValidator(_mount_path)] = "/workspace"
    endpoint: Annotated[str, PlainValidator(_endpoint)] | None = None
    #: Where this machine sees the volume as a folder: a pod that mounts it, or the
    #: fake RunPod's folder for it. Without it the volume is reached over S3.
    local_path: Path | None = None

    @field_validator("local_path", mode="plain")
    @classmethod
    def _resolve_local(cls, value: Any, info: ValidationInfo) -> Path | None:
        return None if value is None else folder_path(value, info)

    @property
    def s3_endpoint_url(self) -> str:
        """The S3-compatible API's URL: ``endpoint`` if set, else RunPod's for the data center."""
        return self.endpoint or f"https://s3api-{self.data_center.lower()}.runpod.io/"

    def open(self) -> Volume:
        """The volume as this machine reaches it: ``local_path`` as a folder, else RunPod's S3-compatible API.

        Over S3 the bucket is the volume's id and the region its data center;
        the endpoint is ``endpoint``, else ``AWS_ENDPOINT_URL_S3``, else
        RunPod's for the data center.
        """
        if self.local_path is not None:
            return DirectoryVolume(self.local_path)
        from hpo.volume import S3Volume  # boto3 loads only where a volume is reached over S3

        endpoint = self.endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or self.s3_endpoint_url
        return S3Volume(self.id, endpoint_url=endpoint, region=self.data_center)
