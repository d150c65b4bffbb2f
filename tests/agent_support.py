"""What the agent's tests share: objectives published to a volume, one trial spec per objective, and
the process's SIGTERM handler put back after each test (the agent installs its own)."""

from __future__ import annotations

import signal
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from hpo.code import publish_objectives
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec
from hpo.volume import Volume

LAYOUT = StudyLayout("s")


def publish_trials(
    volume: Volume,
    folder: Path,
    objectives: Mapping[str, str],
    *,
    params: dict[str, Any] | None = None,
    search_space: dict[str, Any] | None = None,
) -> None:
    """Write ``objectives`` (name -> code) as a snapshot on ``volume`` and trial ``n``'s spec for the ``n``-th one."""
    folder.mkdir()
    for name, code in objectives.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(code))
    sha = publish_objectives(volume, "s", folder)
    for number, name in enumerate(objectives):
        TrialSpec(
            study="s", trial=number, objective=name, params=dict(params or {}),
            search_space=dict(search_space or {}), max_step=5, code=sha,
        ).write(volume, LAYOUT.spec(number))


@pytest.fixture(autouse=True)
def keep_sigterm_handler() -> Iterator[None]:
    """Restore the SIGTERM handler a test's agent replaced."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)
