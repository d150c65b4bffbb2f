"""The ``local`` backend's world for the contract suite: this machine, nothing to start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

STUDY = "steady"


@contextmanager
def provider(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local processes need nothing but this machine."""
    yield
