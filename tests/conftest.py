"""Shared fixtures: volumes for the contract suite, and a study workspace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hpo.volume import DirectoryVolume, Volume


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a loopback port, one per test process (xdist worker): yields its endpoint URL.

    Tests make their own buckets on it (``s3_server.make_bucket``).
    """
    from s3_server import moto_s3_server

    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture(params=["directory", "s3"])
def volume(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Volume:
    """Each Volume implementation in turn, empty.

    "s3" is an S3Volume on a fresh bucket of the shared moto server, with
    RunPod's credential variables set to the fake server's keys.
    """
    if request.param == "directory":
        return DirectoryVolume(tmp_path / "volume")
    if request.param == "s3":
        from s3_server import CREDENTIALS_ENV, make_bucket

        from hpo.volume import S3Volume

        endpoint = request.getfixturevalue("moto_s3")  # started only when an S3 test runs
        for name, value in CREDENTIALS_ENV.items():
            monkeypatch.setenv(name, value)
        return S3Volume(make_bucket(endpoint), endpoint_url=endpoint, region="EU-RO-1")
    raise AssertionError(request.param)
