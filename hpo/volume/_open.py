"""Open a volume from the root string the agent and controller pass around."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from hpo.errors import VolumeError
from hpo.volume._base import Volume
from hpo.volume._directory import DirectoryVolume

if TYPE_CHECKING:
    from hpo.volume._s3 import S3Volume

#: The query parameters an ``s3://`` root may carry; anything else (a key, a
#: token) is refused, because this string travels in pods' environments.
_S3_PARAMETERS = frozenset({"endpoint", "region"})


def open_volume(root: str) -> Volume:
    """Return the volume named by ``root``: a directory path, a ``file://`` URL or an ``s3://`` URL.

    The agent receives this string in ``HPO_VOLUME``. An S3 volume is
    ``s3://<bucket>[/<prefix>][?endpoint=<url>&region=<region>]`` (RunPod:
    bucket = network volume id, region = data-center id); see :func:`open_s3_volume`.
    """
    if root.startswith("s3://"):
        return open_s3_volume(root)
    root = root.removeprefix("file://")
    if "://" in root:
        raise VolumeError(f"unsupported volume {root!r}: expected a directory path or an s3:// URL")
    return DirectoryVolume(root)


def open_s3_volume(root: str) -> S3Volume:
    """Open ``s3://<bucket>[/<prefix>][?endpoint=<url>&region=<region>]``.

    The URL's query wins; without it the endpoint comes from
    ``AWS_ENDPOINT_URL_S3`` and the region from ``AWS_REGION`` or
    ``AWS_DEFAULT_REGION``. Carrying both in the URL (what
    :attr:`S3Volume.address` writes) makes the string self-contained, so an
    agent on a pod needs only it and the credentials
    (``RUNPOD_S3_ACCESS_KEY`` / ``RUNPOD_S3_SECRET_KEY``), which never go in
    the URL: one holding credentials is refused without being echoed.
    """
    from hpo.volume._s3 import S3Volume  # boto3 loads only for S3 volumes

    parts = urlsplit(root)
    if "@" in parts.netloc or parts.password is not None:
        raise VolumeError("an s3:// volume URL must not carry credentials: set RUNPOD_S3_ACCESS_KEY / RUNPOD_S3_SECRET_KEY")
    params = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(params) - _S3_PARAMETERS)
    if unknown:
        # Name the parameters, never their values: one might be a secret.
        raise VolumeError(f"s3://{parts.netloc}: unknown volume URL parameter(s) {', '.join(unknown)}: only endpoint and region")
    if not parts.netloc:
        raise VolumeError(f"volume URL {root!r} names no bucket: expected s3://<network volume id>[/<prefix>]")
    endpoint = params.get("endpoint", [""])[-1] or os.environ.get("AWS_ENDPOINT_URL_S3") or None
    if endpoint is not None and urlsplit(endpoint).scheme not in {"http", "https"}:
        raise VolumeError(f"s3://{parts.netloc}: endpoint {endpoint!r} is not an http(s) URL")
    region = params.get("region", [""])[-1] or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return S3Volume(parts.netloc, endpoint_url=endpoint, region=region or None, prefix=parts.path.strip("/"))
