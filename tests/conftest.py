"""Shared fixtures: volumes for the contract suite, and a study workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.volume import DirectoryVolume, Volume


@pytest.fixture(params=["directory"])
def volume(request: pytest.FixtureRequest, tmp_path: Path) -> Volume:
    """Each Volume implementation in turn, empty."""
    if request.param == "directory":
        return DirectoryVolume(tmp_path / "volume")
    raise AssertionError(request.param)
