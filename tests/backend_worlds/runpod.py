"""The ``runpod`` backend's world for the contract suite: the fake RunPod API, its pods running the real agent."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fake_runpod_support.processes import started_fake
from studyfiles import VOLUME_ID

STUDY = "pods"

POD_ENTRY = Path(__file__).resolve().parent.parent / "pod_entry.py"


@contextmanager
def provider(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fake RunPod whose network volume is ``project/storage``, the client's environment pointed at it.

    Its clock runs 20 times faster than the wall's, so pods provision and
    start in a fraction of a second; on the way out no pod process may survive.
    """
    with started_fake(
        volumes={VOLUME_ID: project / "storage"}, volume_data_center="EU-RO-1", time_scale=20.0,
        provision_seconds=4.0, start_seconds=2.0, kill_grace_seconds=5.0, workdir=tmp_path / "fake",
        pod_command=[sys.executable, str(POD_ENTRY)],
    ) as fake:  # fmt: skip
        for name, value in fake.client_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
        yield
