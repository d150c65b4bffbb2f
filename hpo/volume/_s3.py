"""The volume over an S3-compatible API: RunPod's network volume seen from outside a pod.

RunPod serves every network volume as a bucket (bucket = volume id, region =
data-center id, endpoint ``https://s3api-<dc>.runpod.io/``; RUNPOD.md §4). The
controller reaches the volume this way when it runs off-pod; the pods write the
same files through their ``/workspace`` mount. What RunPod's API lacks or does
oddly shapes this module:

* no append: :meth:`S3Volume.append_bytes` rewrites the whole object (the file
  has one writer, so read-modify-write is safe);
* no DeleteObjects, CreateBucket or presigned URLs: never used;
* PutObject only below 500 MB: larger writes go multipart;
* its gateway answers 502 under load: botocore's ``standard`` retry mode
  retries 5xx and throttling with jittered backoff, up to 10 attempts;
* listings include empty directories as ``folder/`` keys: skipped;
* whether it honours ``StartAfter`` (which a poll's :meth:`S3Volume.sizes`
  lists from) is not documented: a listing answered from the top makes the
  volume HEAD the keys instead;
* a first, slow listing can repeat its continuation token ("The same next
  token was received twice"): the listing is retried whole;
* botocore >= 1.36 adds CRC checksums that third-party S3 servers often
  reject: only sent where the API requires them.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlencode

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PaginationError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from hpo.errors import VolumeError, VolumeNotFoundError
from hpo.volume._base import ObjectInfo, Volume, check_key

#: RunPod refuses a PutObject (and an UploadPart) of 500 MB or more.
PUT_LIMIT = 500 * 1000**2
#: S3's smallest part but the last; RunPod does not enforce it, AWS and moto do.
MIN_PART = 5 * 1024**2
#: S3 allows at most this many parts in one upload.
MAX_PARTS = 10_000
#: Parts uploaded at once: enough to fill a link, few enough to bound memory.
PART_THREADS = 4
#: Whole-listing attempts when RunPod repeats a continuation token.
LIST_ATTEMPTS = 4
#: Reads of a response body cut short (RunPod's gateway can end a 200 early).
READ_ATTEMPTS = 3
#: Reads (and listings) one poll keeps in flight at once: a poll of 100 grown event files pays
#: about 7 round trips, not 100. boto3 clients are thread-safe; the connection pool is sized for it.
READ_THREADS = 16
#: Live keys one listing of :meth:`S3Volume.sizes` settles at most; a poll's listings run side by side.
KEYS_PER_LISTING = 100
#: Objects a listing of :meth:`S3Volume.sizes` asks for per live key it settles (a trial folder
#: holds its spec, launch record, events, log and a checkpoint or two), at least
#: :data:`MIN_LISTED`, at most S3's 1,000 a page. Too few costs one more listing, from the next
#: key still unsettled; too many lists objects past the last key, each one parsed for nothing
#: (botocore parses a 1,000-object page in 0.05 to 0.2 s of CPU): so it errs low.
OBJECTS_PER_KEY = 6
MIN_LISTED = 50
#: Attempts per S3 operation (botocore's standard retry mode) where the caller names none. Read
#: when a client is built, so that a test of an unreachable endpoint can lower it (monkeypatch)
#: rather than wait out ten backed-off attempts; nothing in the product changes it.
MAX_ATTEMPTS = 10

_T = TypeVar("_T")
_R = TypeVar("_R")

_DENIED = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"})
_MISSING_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
_CREDENTIALS_HINT = "check RUNPOD_S3_ACCESS_KEY / RUNPOD_S3_SECRET_KEY"

# One boto3 session for the process: it caches the parsed S3 service model,
# which otherwise costs ~0.1 s per client. Building clients from it is not
# thread-safe, hence the lock.
_SESSION: boto3.session.Session | None = None
_SESSION_LOCK = threading.Lock()


def s3_client(
    endpoint_url: str | None = None, region: str | None = None, *, max_attempts: int | None = None
) -> Any:
    """Build the boto3 S3 client a :class:`S3Volume` uses.

    The endpoint is ``endpoint_url``, else ``AWS_ENDPOINT_URL_S3``; the region is
    ``region`` (RunPod: the data-center id, such as ``EU-RO-1``), else ``us-east-1``.
    Credentials are ``RUNPOD_S3_ACCESS_KEY`` / ``RUNPOD_S3_SECRET_KEY`` when both
    are set, else boto3's usual chain (``AWS_ACCESS_KEY_ID``, profiles, ...). They
    go straight into the client and are kept nowhere else. ``max_attempts`` bounds
    each operation's tries (default :data:`MAX_ATTEMPTS`).
    """
    access_key = os.environ.get("RUNPOD_S3_ACCESS_KEY")
    secret_key = os.environ.get("RUNPOD_S3_SECRET_KEY")
    if bool(access_key) != bool(secret_key):
        missing = "RUNPOD_S3_SECRET_KEY" if access_key else "RUNPOD_S3_ACCESS_KEY"
        raise VolumeError(f"{missing} is not set: RunPod's S3 API needs both RUNPOD_S3_ACCESS_KEY and RUNPOD_S3_SECRET_KEY")
    credentials = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key} if access_key else {}
    config = Config(
        # RunPod's gateway answers 502 under load; standard mode retries 5xx,
        # throttling and dropped connections with jittered exponential backoff.
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS if max_attempts is None else max_attempts},
        connect_timeout=10,
        read_timeout=120,  # CompleteMultipartUpload of a big file answers slowly on RunPod
        signature_version="s3v4",
        # Reads and listings of a poll run READ_THREADS at once, uploads PART_THREADS: a
        # connection each, kept alive (a new one costs a round trip more, two for TLS).
        max_pool_connections=2 * READ_THREADS,
        s3={"addressing_style": "path"},  # bucket ids are not DNS names on RunPod's endpoints
        # botocore >= 1.36 sends CRC checksums (aws-chunked bodies) by default, which
        # S3-compatible servers often reject; send and check them only where required.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        return _SESSION.client(
            "s3",
            endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or None,
            region_name=region or "us-east-1",
            config=config,
            **credentials,
        )


class S3Volume(Volume):
    """A volume whose keys are objects ``prefix + key`` in one S3 bucket.

    ``requests`` counts the S3 operations issued (``{"GetObject": 3, ...}``, one
    per API call however many HTTP retries it took), so tests and benchmarks
    can report what a workload costs in requests.
    """

    read_concurrency = READ_THREADS

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        prefix: str = "",
        client: Any = None,
        multipart_threshold: int = 64 * 1024**2,
        max_attempts: int | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise VolumeError(f"invalid S3 bucket (network volume id) {bucket!r}")
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = check_key(prefix) + "/" if prefix else ""
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.multipart_threshold = multipart_threshold
        self.requests: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()
        self._bucket_checked = False
        self._start_after_ignored = False  # the server listed from the top once: HEAD the keys instead
        self._client = client if client is not None else s3_client(endpoint_url, region, max_attempts=max_attempts)
        self.endpoint: str = self._client.meta.endpoint_url
        self.region: str = self._client.meta.region_name
        # botocore's public event API: one "before-call" per operation, before any retry.
        self._client.meta.events.register("before-call.s3.*", self._count)

    @property
    def address(self) -> str:
        """The string :func:`hpo.volume.open_volume` reopens this volume from (no secret in it).

        ``s3://<bucket>[/<prefix>]?endpoint=<url>&region=<dc>``: what the
        controller hands an agent that has no mount of the volume.
        """
        return f"{self.url}?{urlencode({'endpoint': self.endpoint, 'region': self.region})}"

    def _count(self, model: Any, **_: Any) -> None:
        with self._count_lock:
            self.requests[model.name] += 1

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    # -- reads ---------------------------------------------------------------

    def read_bytes(self, key: str) -> bytes:
        data, _ = self._get(key, 0)
        return data

    def read_from(self, key: str, offset: int) -> bytes:
        """Return the bytes from ``offset`` on with one ranged GET (``Range: bytes=<offset>-``)."""
        if offset < 0:
            raise VolumeError(f"{self.url}: {key}: negative offset {offset}")
        data, ranged = self._get(key, offset)
        # A server that ignores Range answers 200 with the whole object.
        return data if ranged or offset == 0 else data[offset:]

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """At most ``length`` bytes from ``offset`` with one ranged GET (``Range: bytes=<offset>-<last>``)."""
        if offset < 0 or length <= 0:
            raise VolumeError(f"{self.url}: {key}: bad range {offset}+{length}")
        data, ranged = self._get(key, offset, offset + length - 1)
        return (data if ranged else data[offset:])[:length]

    def _get(self, key: str, offset: int, last: int | None = None) -> tuple[bytes, bool]:
        """GET the object (from ``offset``, up to byte ``last``): its bytes, and whether the server honoured the range."""
        s3key = self._key(key)
        extra = {"Range": f"bytes={offset}-{'' if last is None else last}"} if offset or last is not None else {}
        for attempt in range(READ_ATTEMPTS):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=s3key, **extra)
            except ClientError as exc:
                code = _code(exc)
                if code in _MISSING_KEY:
                    raise VolumeNotFoundError(self.url, key) from None
                if code == "InvalidRange":
                    # S3 checks the key before the range, so a 416 means the object
                    # exists and ends at or before ``offset``. AWS and moto say so
                    # with ActualObjectSize; without it, make sure with a HEAD.
                    if "ActualObjectSize" not in exc.response.get("Error", {}) and self.size(key) is None:
                        raise VolumeNotFoundError(self.url, key) from None
                    return b"", True
                raise self._fail(exc, "read", key) from exc
            except BotoCoreError as exc:
                raise self._fail(exc, "read", key) from exc
            try:
                return response["Body"].read(), "ContentRange" in response
            except (IncompleteReadError, HTTPClientError) as exc:
                # botocore retries a request, not a body cut short while it streams
                # (RunPod's gateway can end a 200 early): GET it again.
                if attempt == READ_ATTEMPTS - 1:
                    raise self._fail(exc, "read", key) from exc
        raise AssertionError("unreachable")

    def size(self, key: str) -> int | None:
        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as exc:
            if _code(exc) in _MISSING_KEY:
                # A HEAD has no body: a missing bucket is a bare 404 too. Tell them apart once.
                self._check_bucket(key)
                return None
            raise self._fail(exc, "stat", key) from exc
        except BotoCoreError as exc:
            raise self._fail(exc, "stat", key) from exc

    def _check_bucket(self, key: str) -> None:
        if self._bucket_checked:
            return
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in _MISSING_KEY:
                raise self._no_bucket() from None
            raise self._fail(exc, "stat", key) from exc
        except BotoCoreError as exc:
            raise self._fail(exc, "stat", key) from exc
        self._bucket_checked = True

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        """Return each key's size (None where missing) from listings that start at the keys themselves.

        S3 lists in key order from any point (``StartAfter``), so a listing
        starts just before the first key it has to settle and covers the
        objects between the keys: the live attempts' folders, and of the
        finished trials around them only those whose keys sort between two
        live ones, never the rest of the study's history. Sorted keys are
        settled :data:`KEYS_PER_LISTING` to a listing, the listings side by
        side; a page that ends before its last key is followed by one that
        starts at the next key still unsettled, jumping over whatever lies
        between. A poll of 3 live event files costs one request, a poll of 200
        two (side by side), whatever the length of the history. A server that
        ignores ``StartAfter`` is noticed at its first answer; its keys are
        then HEADed, :data:`READ_THREADS` at a time.
        """
        asked = list(keys)
        wanted = sorted({check_key(key) for key in asked})
        count = -(-len(wanted) // KEYS_PER_LISTING)  # listings, each settling as many keys as the others
        groups = [wanted[i * len(wanted) // count : (i + 1) * len(wanted) // count] for i in range(count)]
        found: dict[str, int | None] = {}
        try:
            if self._start_after_ignored:
                raise _StartAfterIgnored
            for part in self._each(self._sizes_by_listing, groups):
                found.update(part)
        except _StartAfterIgnored:
            self._start_after_ignored = True
            found = dict(zip(wanted, self._each(self.size, wanted), strict=True))
        return {key: found[check_key(key)] for key in asked}

    def _each(self, call: Callable[[_T], _R], items: list[_T]) -> list[_R]:
        """``call`` on every item, :data:`READ_THREADS` at a time (in this thread when there is one)."""
        if len(items) < 2:
            return [call(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(items))) as pool:
            return list(pool.map(call, items))

    def _sizes_by_listing(self, keys: list[str]) -> dict[str, int | None]:
        """The sizes of ``keys`` (sorted), from listings of the range they span, gaps between them skipped."""
        # The common prefix of a sorted list is that of its ends; the listing stops where it does.
        prefix = self.prefix + os.path.commonprefix([keys[0], keys[-1]])
        wanted = {self.prefix + key: key for key in keys}
        found: dict[str, int | None] = dict.fromkeys(keys)
        listed = ""  # the last object listed so far
        at = 0  # keys[at:] are not settled yet
        while at < len(keys):
            # Just before the next unsettled key (a prefix of it sorts first), or after the last listed.
            start = max(self.prefix + keys[at][:-1], listed)
            asked = min(1000, max(MIN_LISTED, OBJECTS_PER_KEY * (len(keys) - at)))
            request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": asked}
            if start:
                request["StartAfter"] = start
            try:
                page = self._client.list_objects_v2(**request)
            except (ClientError, BotoCoreError) as exc:
                raise self._fail(exc, "list", keys[at]) from exc
            contents = page.get("Contents", ())
            if start and contents and contents[0]["Key"] <= start:
                raise _StartAfterIgnored  # it listed from the top: walking on would cost the whole history
            for obj in contents:
                key = wanted.get(obj["Key"])
                if key is not None:
                    found[key] = int(obj["Size"])
            if not page.get("IsTruncated"):
                break  # nothing after the last object listed: every key left is missing
            if not contents:  # "more to come" with nothing listed: ask for the rest one by one
                found.update(zip(keys[at:], self._each(self.size, keys[at:]), strict=True))
                break
            listed = contents[-1]["Key"]
            while at < len(keys) and self.prefix + keys[at] <= listed:
                at += 1
        return found

    def _scan(self, prefix: str, *, key_for_errors: str) -> list[ObjectInfo]:
        """List every object whose key starts with ``prefix`` (a plain string), sorted by key."""
        for attempt in range(LIST_ATTEMPTS):
            try:
                pages = self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=self.prefix + prefix
                )
                objects = [obj for page in pages for obj in page.get("Contents", ())]
                break
            except PaginationError as exc:
                # RunPod: "The same next token was received twice" while it
                # builds a big listing; a later listing succeeds.
                if attempt == LIST_ATTEMPTS - 1:
                    raise self._fail(exc, "list", key_for_errors) from exc
                time.sleep(0.2 * 2**attempt)
            except (ClientError, BotoCoreError) as exc:
                raise self._fail(exc, "list", key_for_errors) from exc
        found: dict[str, ObjectInfo] = {}
        for obj in objects:
            key = obj["Key"][len(self.prefix) :]
            name = key.rsplit("/", 1)[-1]
            if not name:
                continue  # an empty directory, which RunPod lists as "folder/"
            if name.startswith(".") and name.endswith(".tmp"):
                continue  # a pod's DirectoryVolume write in flight through the mount
            found[key] = ObjectInfo(key, int(obj["Size"]), obj["LastModified"].timestamp())
        return sorted(found.values(), key=lambda info: info.key)

    def list(self, prefix: str) -> list[ObjectInfo]:
        folder = check_key(prefix.rstrip("/")) + "/"
        return self._scan(folder, key_for_errors=prefix)

    def probe(self) -> None:
        """One request (a LIST of at most one key): do the key and endpoint reach the bucket?

        Raises the same one-line :class:`VolumeError` any other call would (a
        refused key, no such bucket, no connection); ``hpo check`` uses it.
        """
        try:
            self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, "list", "") from exc

    # -- writes --------------------------------------------------------------

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace the object: one PutObject (atomic in S3), multipart above ``multipart_threshold``."""
        s3key = self._key(key)
        try:
            if len(data) > self.multipart_threshold or len(data) >= PUT_LIMIT:
                self._put_multipart(s3key, bytes(data))
            else:
                self._client.put_object(Bucket=self.bucket, Key=s3key, Body=bytes(data))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, "write", key) from exc

    def _put_multipart(self, s3key: str, data: bytes) -> None:
        part_size = max(self.multipart_threshold, MIN_PART, -(-len(data) // MAX_PARTS))
        part_size = min(part_size, PUT_LIMIT - 1)
        upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=s3key)["UploadId"]

        def upload(number: int) -> dict[str, Any]:
            start = (number - 1) * part_size
            response = self._client.upload_part(
                Bucket=self.bucket, Key=s3key, UploadId=upload_id, PartNumber=number, Body=data[start : start + part_size]
            )
            return {"PartNumber": number, "ETag": response["ETag"]}

        try:
            numbers = range(1, -(-len(data) // part_size) + 1)
            with ThreadPoolExecutor(max_workers=min(PART_THREADS, len(numbers))) as pool:
                parts = list(pool.map(upload, numbers))
            self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=s3key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # RunPod stages parts in a hidden .s3compat_uploads/ folder: leave none behind.
            with contextlib.suppress(ClientError, BotoCoreError):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=s3key, UploadId=upload_id)
            raise

    def append_bytes(self, key: str, data: bytes) -> None:
        """Append by reading the object and writing it back whole (S3 has no append).

        Safe only because every volume file has exactly one writer (the
        interface's rule): nobody can write between our read and our write.
        It costs a GET and a PUT of the whole object, so appenders over S3
        should batch.
        """
        try:
            old = self.read_bytes(key)
        except VolumeNotFoundError:
            old = b""
        self.write_bytes(key, old + data)

    def delete(self, key: str) -> None:
        """DeleteObject (S3 answers 204 for a missing key too); never DeleteObjects, which RunPod lacks."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING_KEY:
                return
            raise self._fail(exc, "delete", key) from exc
        except BotoCoreError as exc:
            raise self._fail(exc, "delete", key) from exc

    # -- errors --------------------------------------------------------------

    def _no_bucket(self) -> VolumeError:
        return VolumeError(
            f"network volume '{self.bucket}' not found at {self.endpoint}: check volume.id and volume.data_center"
        )

    def _fail(self, exc: Exception, action: str, key: str) -> VolumeError:
        """Turn a botocore failure into a one-line VolumeError naming the volume, key and endpoint.

        Messages are built from the error code, S3's message and the endpoint;
        none of those can hold the secret key, which this object never sees.
        """
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket":
                return self._no_bucket()
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _DENIED or status == 403:
                return VolumeError(
                    f"{self.url}: access denied to {action} {key!r} ({code}) at {self.endpoint}: {_CREDENTIALS_HINT}"
                )
            message = exc.response.get("Error", {}).get("Message") or f"HTTP {status}"
            return VolumeError(f"{self.url}: cannot {action} {key!r}: {code}: {message}")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return VolumeError(f"{self.url}: no S3 credentials to {action} {key!r}: set RUNPOD_S3_ACCESS_KEY and RUNPOD_S3_SECRET_KEY")
        if isinstance(exc, (BotoConnectionError, HTTPClientError)):
            return VolumeError(f"{self.url}: cannot reach the S3 endpoint {self.endpoint} to {action} {key!r}: {exc}")
        return VolumeError(f"{self.url}: cannot {action} {key!r}: {type(exc).__name__}: {exc}")


class _StartAfterIgnored(Exception):
    """The server answered a listing from before its ``StartAfter``: it does not honour the parameter."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
