"""S3Volume beyond the contract: RunPod's quirks, request counts, errors, and opening by URL.

Everything runs against moto's S3 server on loopback (tests/s3_server.py),
through real HTTP; what moto cannot play (a 502ing gateway, an S3 API that
refuses unknown keys, a repeated continuation token) a loopback
:class:`FaultProxy` in front of it plays.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from s3_server import (
    ACCESS_KEY,
    CREDENTIALS_ENV,
    SECRET_KEY,
    FaultProxy,
    ProxyRequest,
    Reply,
    admin_client,
    make_bucket,
    s3_error,
)

from hpo.errors import VolumeError, VolumeNotFoundError
from hpo.volume import S3Volume, open_volume


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake server's keys in RunPod's variables; no AWS ones to fall back on."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in CREDENTIALS_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def bucket(moto_s3: str) -> str:
    return make_bucket(moto_s3)


@pytest.fixture
def proxy(moto_s3: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_s3) as fault_proxy:
        yield fault_proxy


def test_502s_from_the_gateway_are_retried_until_the_operation_succeeds(bucket: str, proxy: FaultProxy) -> None:
    volume = S3Volume(bucket, endpoint_url=proxy.url, region="EU-RO-1")
    proxy.fail_next(2)
    volume.write_bytes("t/spec.json", b"{}")
    assert proxy.statuses() == [502, 502, 200]
    proxy.fail_next(2)
    assert volume.read_bytes("t/spec.json") == b"{}"
    assert proxy.statuses()[3:] == [502, 502, 200]
    # One operation each, however many HTTP attempts it took.
    assert volume.requests == {"PutObject": 1, "GetObject": 1}


def test_missing_bucket_names_the_volume_and_where_it_was_looked_for(moto_s3: str) -> None:
    volume = S3Volume("novolume42", endpoint_url=moto_s3, region="EU-RO-1")
    expected = f"network volume 'novolume42' not found at {moto_s3}: check volume.id and volume.data_center"
    for call in (
        lambda: volume.read_bytes("a/spec.json"),
        lambda: volume.size("a/spec.json"),  # a HEAD: a bare 404, told apart by a HeadBucket
        lambda: volume.write_bytes("a/spec.json", b"x"),
        lambda: volume.list("a"),
        lambda: volume.delete("a/spec.json"),
    ):
        with pytest.raises(VolumeError) as info:
            call()
        assert str(info.value) == expected


def test_wrong_credentials_name_volume_and_key_but_never_the_secret(
    bucket: str, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto's server checks no signatures; the proxy refuses unknown access keys as RunPod does.
    def gate(request: ProxyRequest) -> Reply | None:
        if request.access_key != ACCESS_KEY:
            return s3_error(403, "AccessDenied", "Access Denied")
        return None

    proxy.rule = gate
    wrong_secret = "rps_WRONGSECRETwrongsecret0123456789"
    monkeypatch.setenv("RUNPOD_S3_ACCESS_KEY", "user_someoneelse")
    monkeypatch.setenv("RUNPOD_S3_SECRET_KEY", wrong_secret)
    volume = S3Volume(bucket, endpoint_url=proxy.url, region="EU-RO-1")
    for call in (
        lambda: volume.read_bytes("hpo/demo/spec.json"),
        lambda: volume.size("hpo/demo/spec.json"),  # a HEAD's 403 has no body
        lambda: volume.write_bytes("hpo/demo/spec.json", b"x"),
    ):
        with pytest.raises(VolumeError) as info:
            call()
        message = str(info.value)
        assert f"s3://{bucket}" in message and "'hpo/demo/spec.json'" in message
        assert "RUNPOD_S3_ACCESS_KEY / RUNPOD_S3_SECRET_KEY" in message
        assert wrong_secret not in message and wrong_secret not in repr(info.value.__cause__)
    assert wrong_secret not in repr(volume) and wrong_secret not in str(vars(volume))
    assert SECRET_KEY not in volume.address


def test_unreachable_endpoint_is_named(bucket: str) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    volume = S3Volume(bucket, endpoint_url=endpoint, max_attempts=1)
    with pytest.raises(VolumeError, match=f"cannot reach the S3 endpoint {endpoint}.* 'k'"):
        volume.read_bytes("k")


def test_half_set_runpod_credentials_are_refused(monkeypatch: pytest.MonkeyPatch, moto_s3: str) -> None:
    monkeypatch.delenv("RUNPOD_S3_SECRET_KEY")
    with pytest.raises(VolumeError, match="RUNPOD_S3_SECRET_KEY is not set"):
        S3Volume("v", endpoint_url=moto_s3)


def test_aws_credential_chain_works_without_runpod_variables(
    bucket: str, moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CREDENTIALS_ENV:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    volume = S3Volume(bucket)
    volume.write_bytes("k", b"v")
    assert volume.read_bytes("k") == b"v"
    assert (volume.endpoint, volume.region) == (moto_s3, "us-east-1")


def test_big_writes_go_multipart_and_round_trip(bucket: str, moto_s3: str) -> None:
    volume = S3Volume(bucket, endpoint_url=moto_s3, multipart_threshold=1024**2)
    payload = os.urandom(6 * 1024**2)  # two parts: S3's (and moto's) 5 MiB minimum, then the rest
    volume.write_bytes("ckpt/model.bin", payload)
    assert volume.requests == {"CreateMultipartUpload": 1, "UploadPart": 2, "CompleteMultipartUpload": 1}
    assert volume.read_bytes("ckpt/model.bin") == payload
    volume.requests.clear()
    volume.write_bytes("ckpt/small.bin", payload[: 1024**2])  # at the threshold: one PutObject
    assert volume.requests == {"PutObject": 1}


def test_sizes_of_200_event_files_cost_listings_side_by_side(bucket: str, proxy: FaultProxy) -> None:
    volume = S3Volume(bucket, endpoint_url=proxy.url)
    keys = [f"hpo/demo/trials/{n}/attempts/0/events.jsonl" for n in range(200)]
    for n, key in enumerate(keys):
        volume.write_bytes(key, b"x" * n)
    volume.write_bytes("hpo/demo/trials/7/attempts/0/checkpoint.bin", b"not asked for")
    volume.requests.clear()
    missing = "hpo/demo/trials/999/attempts/0/events.jsonl"
    sizes = volume.sizes([*keys, missing])
    assert volume.requests == {"ListObjectsV2": 3}  # 201 keys: three listings of 67, side by side
    assert sizes == {**{key: n for n, key in enumerate(keys)}, missing: None}
    listings = [r for r in proxy.requests if r.query.get("list-type") == ["2"]]
    # Each starts just before its first key (a prefix of it), none after a continuation token.
    assert all(r.query["start-after"][0] + "l" in keys or r.query["start-after"][0] + "l" == missing for r in listings)
    assert not any("continuation-token" in r.query for r in listings)


def test_sizes_of_keys_in_no_common_folder_are_one_listing_of_what_lies_between(bucket: str, moto_s3: str) -> None:
    volume = S3Volume(bucket, endpoint_url=moto_s3)
    volume.write_bytes("a/1", b"1")
    volume.write_bytes("b/22", b"22")
    volume.requests.clear()
    assert volume.sizes(["b/22", "a/1", "a/1"]) == {"b/22": 2, "a/1": 1}
    assert volume.requests == {"ListObjectsV2": 1}
    assert volume.sizes([]) == {}


def test_sizes_jump_over_what_lies_between_distant_keys(bucket: str, moto_s3: str) -> None:
    """A page that ends before the next key asked for is followed by a listing that starts at that key."""
    volume = S3Volume(bucket, endpoint_url=moto_s3)
    admin = admin_client(moto_s3)
    for n in range(150):  # more objects between the two keys than a page of sizes() asks for
        admin.put_object(Bucket=bucket, Key=f"t/m/{n:03d}", Body=b"")
    volume.write_bytes("t/a/events.jsonl", b"a")
    volume.write_bytes("t/z/events.jsonl", b"zz")
    volume.requests.clear()
    assert volume.sizes(["t/a/events.jsonl", "t/z/events.jsonl", "t/q/events.jsonl"]) == {
        "t/a/events.jsonl": 1, "t/z/events.jsonl": 2, "t/q/events.jsonl": None
    }
    assert volume.requests == {"ListObjectsV2": 2}  # never a page through the 150 between


def test_read_from_is_one_ranged_get(bucket: str, proxy: FaultProxy) -> None:
    volume = S3Volume(bucket, endpoint_url=proxy.url)
    volume.write_bytes("log/events.jsonl", b"hello world")
    volume.requests.clear()
    assert volume.read_from("log/events.jsonl", 6) == b"world"
    assert volume.requests == {"GetObject": 1}
    assert proxy.requests[-1].headers["range"] == "bytes=6-"
    # At (or past) the end: S3's 416 proves the object exists, so no HEAD follows.
    volume.requests.clear()
    assert volume.read_from("log/events.jsonl", 11) == b""
    assert volume.requests == {"GetObject": 1}
    with pytest.raises(VolumeNotFoundError):
        volume.read_from("log/missing.jsonl", 3)


def test_listings_skip_directory_placeholders_and_writes_in_flight(bucket: str, moto_s3: str) -> None:
    volume = S3Volume(bucket, endpoint_url=moto_s3)
    volume.write_bytes("t/a/b/c", b"c")
    admin = admin_client(moto_s3)
    # RunPod lists empty directories as "folder/" keys; a pod's DirectoryVolume
    # stages its atomic writes as hidden ".name.*.tmp" files beside the target.
    for placeholder in ("t/", "t/a/b/", "t/empty/", "t/a/.spec.json.x1y2.tmp"):
        admin.put_object(Bucket=bucket, Key=placeholder, Body=b"")
    assert [info.key for info in volume.list("t")] == ["t/a/b/c"]
    assert volume.sizes(["t/a/b/c", "t/empty/x"]) == {"t/a/b/c": 1, "t/empty/x": None}


def test_a_repeated_continuation_token_is_retried(bucket: str, proxy: FaultProxy) -> None:
    volume = S3Volume(bucket, endpoint_url=proxy.url)
    volume.write_bytes("big/1", b"1")
    stuck = (
        b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><Prefix>big/</Prefix>'
        b"<KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
        b"<NextContinuationToken>same</NextContinuationToken></ListBucketResult>"
    )
    answered: list[int] = []

    def repeat_token(request: ProxyRequest) -> Reply | None:
        # RunPod's first listing of a big folder can hand out one token twice.
        if "list-type" in request.query and len(answered) < 2:
            answered.append(1)
            return Reply(200, stuck, {"Content-Type": "application/xml"})
        return None

    proxy.rule = repeat_token
    assert [info.key for info in volume.list("big")] == ["big/1"]
    # Two pages of the stuck listing (one request each), then one whole new listing.
    assert volume.requests["ListObjectsV2"] == 3
    assert [entry[3] for entry in proxy.log if "list-type" in entry[2]] == [200, 200, 200]


def test_a_server_that_ignores_start_after_gets_heads_of_the_live_keys(
    bucket: str, moto_s3: str, proxy: FaultProxy
) -> None:
    """Walking a listing that always starts at the top would page through the whole history, every poll."""
    volume = S3Volume(bucket, endpoint_url=proxy.url)
    admin = admin_client(moto_s3)
    for n in range(5):
        admin.put_object(Bucket=bucket, Key=f"t/{n}/events.jsonl", Body=b"x" * n)

    def from_the_top(request: ProxyRequest) -> Reply | None:
        if "start-after" not in request.query:
            return None
        query = {k: v[0] for k, v in request.query.items() if k != "start-after"}
        listing = admin.list_objects_v2(Bucket=bucket, Prefix=query["prefix"], MaxKeys=int(query["max-keys"]))
        body = "".join(f"<Contents><Key>{o['Key']}</Key><Size>{o['Size']}</Size></Contents>" for o in listing["Contents"])
        truncated = str(listing["IsTruncated"]).lower()
        xml = f'<?xml version="1.0"?><ListBucketResult><IsTruncated>{truncated}</IsTruncated>{body}</ListBucketResult>'
        return Reply(200, xml.encode(), {"Content-Type": "application/xml"})

    proxy.rule = from_the_top
    keys = ["t/3/events.jsonl", "t/4/events.jsonl", "t/9/events.jsonl"]
    expected = {"t/3/events.jsonl": 3, "t/4/events.jsonl": 4, "t/9/events.jsonl": None}
    assert volume.sizes(keys) == expected
    assert volume.requests == {"ListObjectsV2": 1, "HeadObject": 3, "HeadBucket": 1}  # noticed at its first answer
    volume.requests.clear()
    assert volume.sizes(keys) == expected
    assert volume.requests == {"HeadObject": 3}  # and remembered


def test_prefix_maps_keys_under_a_folder_of_the_bucket(bucket: str, moto_s3: str) -> None:
    volume = S3Volume(bucket, endpoint_url=moto_s3, prefix="/studies/")
    assert volume.url == f"s3://{bucket}/studies"
    volume.write_bytes("demo/spec.json", b"{}")
    stored = admin_client(moto_s3).list_objects_v2(Bucket=bucket)["Contents"]
    assert [obj["Key"] for obj in stored] == ["studies/demo/spec.json"]
    assert [info.key for info in volume.list("demo")] == ["demo/spec.json"]
    admin_client(moto_s3).put_object(Bucket=bucket, Key="demo/spec.json", Body=b"outside the prefix")
    assert volume.sizes(["demo/spec.json", "demo/x.json"]) == {"demo/spec.json": 2, "demo/x.json": None}


def test_open_volume_takes_an_s3_url_with_endpoint_and_region(bucket: str, moto_s3: str) -> None:
    volume = open_volume(f"s3://{bucket}/hpo?endpoint={quote(moto_s3, safe='')}&region=EU-RO-1")
    assert isinstance(volume, S3Volume)
    assert (volume.url, volume.endpoint, volume.region) == (f"s3://{bucket}/hpo", moto_s3, "EU-RO-1")
    volume.write_bytes("demo/x", b"x")
    assert admin_client(moto_s3).get_object(Bucket=bucket, Key="hpo/demo/x")["Body"].read() == b"x"
    # address is the string to hand an agent: it reopens the same volume, and holds no secret.
    again = open_volume(volume.address)
    assert (again.url, again.read_bytes("demo/x")) == (volume.url, b"x")
    assert SECRET_KEY not in volume.address and ACCESS_KEY not in volume.address


def test_open_volume_takes_endpoint_and_region_from_the_environment(
    bucket: str, moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    monkeypatch.setenv("AWS_REGION", "US-KS-2")
    volume = open_volume(f"s3://{bucket}")
    assert isinstance(volume, S3Volume)
    assert (volume.url, volume.endpoint, volume.region) == (f"s3://{bucket}", moto_s3, "US-KS-2")
    volume.write_bytes("k", b"v")
    assert volume.read_bytes("k") == b"v"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://user_x:rps_secret@vol/p", "must not carry credentials"),
        ("s3://vol?region=EU-RO-1&secret_key=rps_secret", "unknown volume URL parameter"),
        ("s3:///prefix", "names no bucket"),
        ("s3://vol?endpoint=s3api-eu-ro-1.runpod.io", "not an http"),
        ("s3://vol/a/../b", "invalid volume key"),
    ],
)
def test_open_volume_refuses_bad_s3_urls_without_echoing_secrets(url: str, message: str) -> None:
    with pytest.raises(VolumeError, match=message) as info:
        open_volume(url)
    assert "rps_secret" not in str(info.value)
