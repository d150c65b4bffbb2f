"""Where trials run (compute) and where their files live (volume).

RunPod refuses a whole create request for one unknown GPU type or data center,
and only after the study has started paying for its controller's time; these
models refuse such values when studies.yaml is loaded, and suggest the id the
user most likely meant.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    Discriminator,
    PlainValidator,
    Tag,
    ValidationInfo,
    field_validator,
)

from hpo.config._base import Bool, ConfigModel, Token, integer, list_of, tagged
from hpo.config._messages import closest, fail, hint, show
from hpo.config._runpod_ids import (
    CUDA_VERSIONS,
    DATA_CENTER_IDS,
    GPU_TYPE_IDS,
    GPU_VENDOR_PREFIXES,
)

# ---------------------------------------------------------------- RunPod ids


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
                "; RunPod's ids look like 'NVIDIA RTX A5000' (see hpo/config/_runpod_ids.py)"
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

# ---------------------------------------------------------------- compute


class LocalCompute(ConfigModel):
    """Trials run as processes on this machine.

    ``trust_volume_code`` lets them run the objectives snapshot of a RunPod
    volume reached over S3: code that anyone who can write the volume (every
    pod, every holder of its S3 key) can replace (see :mod:`hpo.code`).
    """

    backend: Literal["local"] = "local"
    trust_volume_code: Bool = False


class RunPodCompute(ConfigModel):
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


COMPUTE_BACKENDS = ("local", "runpod")

Compute = Annotated[
    LocalCompute | RunPodCompute,
    Discriminator("backend"),
    tagged("backend", COMPUTE_BACKENDS, what="backend", default="local", shorthand=True),
]
"""Where trials run, chosen by ``backend`` (default ``local``)."""

# ---------------------------------------------------------------- volume


class LocalVolume(ConfigModel):
    """A local folder standing in for the network volume.

    A relative ``path`` is relative to the directory holding studies.yaml (not
    the working directory), so ``hpo run`` finds the same folder from anywhere.
    """

    path: Path

    @field_validator("path", mode="plain")
    @classmethod
    def _resolve(cls, value: Any, info: ValidationInfo) -> Path:
        return _folder(value, info)


def _folder(value: Any, info: ValidationInfo) -> Path:
    """A folder path, relative ones taken from the directory holding studies.yaml."""
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 4096 or "\0" in value:
        raise fail(f"must be a folder path (got {show(value)})")
    path = Path(value).expanduser()
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir")
        path = Path(base or Path.cwd()) / path
    # abspath, not resolve(): normalise ".." without following symlinks.
    return Path(os.path.abspath(path))


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


class RunPodVolume(ConfigModel):
    """A RunPod network volume: mounted in every pod, reached from outside over S3."""

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
        return None if value is None else _folder(value, info)

    @property
    def s3_endpoint_url(self) -> str:
        """The S3-compatible API's URL: ``endpoint`` if set, else RunPod's for the data center."""
        return self.endpoint or f"https://s3api-{self.data_center.lower()}.runpod.io/"


_RUNPOD_VOLUME_KEYS = frozenset(RunPodVolume.model_fields) - {"path"}


def _volume_kind(value: Any) -> str:
    """Pick the volume model by its keys: ``id`` (or any RunPod key) means RunPod."""
    if isinstance(value, RunPodVolume):
        return "runpod"
    if isinstance(value, Mapping) and not _RUNPOD_VOLUME_KEYS.isdisjoint(value):
        return "runpod"
    return "local"


def _volume_shape(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, Mapping):
        raise fail(
            "must be a mapping: {path: <folder>} or {id: <volume id>, data_center: <id>} "
            f"(got {show(value)})"
        )
    if "path" in value and "id" in value:
        raise fail("give either path (a local folder) or id (a RunPod network volume), not both")
    return value


Volume = Annotated[
    Annotated[LocalVolume, Tag("local")] | Annotated[RunPodVolume, Tag("runpod")],
    Discriminator(_volume_kind),
    BeforeValidator(_volume_shape),
]
"""The volume: a local folder (``path``) or a RunPod network volume (``id``)."""
