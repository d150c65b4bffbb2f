"""Backends run a trial's attempts: ``local`` (subprocesses) and, later, ``runpod`` (pods)."""

from __future__ import annotations

from hpo.backends._base import AttemptRef, Backend, WorkerHandle
from hpo.backends.local import LocalBackend

__all__ = ["AttemptRef", "Backend", "LocalBackend", "WorkerHandle"]
