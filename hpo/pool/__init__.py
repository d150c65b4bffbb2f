"""Warm workers: long-lived workers that run a study's attempts one after another (see :mod:`hpo.pool._protocol`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.pool._protocol import (
    ASSIGNMENT_POLL_SECONDS,
    WORKER_ATTEMPT_ENV,
    WORKER_ENV,
    WORKER_IDLE_ENV,
    WORKER_LOG_ENTRY,
    WORKER_POLL_ENV,
    Assignment,
    BootEntry,
    EndEntry,
    ExitEntry,
    StartEntry,
    assignment_key,
    encode_entry,
    parse_worker_index,
    worker_dir,
    worker_log_key,
    worker_output_key,
    workers_dir,
)

if TYPE_CHECKING:
    from hpo.pool._pool import WarmPool


def __getattr__(name: str) -> Any:
    # WarmPool on first use only: the backends import this package's protocol, and the pool imports them.
    if name == "WarmPool":
        from hpo.pool._pool import WarmPool

        return WarmPool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ASSIGNMENT_POLL_SECONDS",
    "WORKER_ATTEMPT_ENV",
    "WORKER_ENV",
    "WORKER_IDLE_ENV",
    "WORKER_LOG_ENTRY",
    "WORKER_POLL_ENV",
    "Assignment",
    "BootEntry",
    "EndEntry",
    "ExitEntry",
    "StartEntry",
    "WarmPool",
    "assignment_key",
    "encode_entry",
    "parse_worker_index",
    "worker_dir",
    "worker_log_key",
    "worker_output_key",
    "workers_dir",
]
