"""Find processes that fake RunPod pods left alive, by the ``RUNPOD_POD_ID`` every container process carries.

Looking processes up by that variable (inherited by everything a container
spawns) rather than by pid stays right when pids are reused by the time a
test checks, and catches grandchildren that left the container's group.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from hpo.fake_runpod import FakeRunPod


def live_pod_processes(pod_ids: Iterable[str]) -> list[psutil.Process]:
    """Live (non-zombie) processes whose environment names one of ``pod_ids`` as ``RUNPOD_POD_ID``."""
    wanted = set(pod_ids)
    if not wanted:
        return []
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get("RUNPOD_POD_ID") in wanted:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_no_pod_processes(pod_ids: Iterable[str], timeout: float = 30.0) -> list[psutil.Process]:
    """Poll until no process of ``pod_ids`` is alive; return the survivors at the deadline (empty = clean).

    The deadline only bounds a failure: a clean stop returns as soon as the last process is gone.
    """
    ids = list(pod_ids)
    deadline = time.monotonic() + timeout
    while True:
        alive = live_pod_processes(ids)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper counts as dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextmanager
def started_fake(**options: Any) -> Iterator[FakeRunPod]:
    """A started :class:`FakeRunPod`; on the way out it stops and no pod process may survive it."""
    server = FakeRunPod(**options).start()
    try:
        yield server
    finally:
        pod_ids = [view.id for view in server.pods()]
        server.stop()
        survivors = wait_no_pod_processes(pod_ids)
        assert not survivors, f"pod processes left behind: {[p.pid for p in survivors]}"
