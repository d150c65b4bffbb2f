"""Backends run a trial's attempts: ``local`` (subprocesses) and, later, ``runpod`` (pods)."""

from __future__ import annotations

from hpo.backends._base import AttemptRef, Backend, Billing, LaunchRate, WorkerHandle
from hpo.backends.local import LocalBackend

__all__ = ["AttemptRef", "Backend", "Billing", "LaunchRate", "LocalBackend", "WorkerHandle"]
