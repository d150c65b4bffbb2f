"""The ``local`` backend's world for the contract suite: this machine, nothing to start.

Its backends run the agent through a wrapper of this interpreter that, given
:data:`~backend_worlds.IDLE_WORKER_ENV`, sleeps instead (as a fake RunPod
pod's ``tests/pod_entry.py`` does): an idle warm worker that lives until stopped.
"""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hpo.backends.local import LocalBackend
from hpo.backends.local import _plugin as local_plugin

STUDY = "steady"


def idle_capable_python(folder: Path) -> Path:
    """A stand-in for this interpreter that sleeps until stopped when ``TEST_STRAY_POD`` is set, else runs Python."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "python-or-idle"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ -n "$TEST_STRAY_POD" ]; then exec sleep 100000; fi\n'
        f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


@contextmanager
def provider(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local processes need nothing but this machine (and the wrapper above as their interpreter)."""
    python = idle_capable_python(tmp_path / "bin")
    monkeypatch.setattr(local_plugin, "LocalBackend", functools.partial(LocalBackend, python=str(python)))
    yield
