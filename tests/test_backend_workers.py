"""The warm-worker part of the backend interface (issue 17): what a backend without workers says, and their env."""

from __future__ import annotations

import pytest

from hpo.backends import AttemptRef, Backend, WorkerHandle
from hpo.backends._base import WORKER_INDEX_ENV, warm_worker_env
from hpo.errors import BackendError
from hpo.pool import WORKER_ENV
from hpo.workers import PoolWorker


class _AttemptsOnly(Backend):
    name = "plain"

    def launch(self, ref: AttemptRef) -> WorkerHandle:
        return WorkerHandle(ref, "1")

    def list_live(self) -> dict[AttemptRef, WorkerHandle]:
        return {}

    def terminate(self, handle: WorkerHandle) -> None:
        pass


def test_a_backend_without_warm_workers_says_so_in_one_line_naming_itself() -> None:
    backend = _AttemptsOnly()
    assert backend.supports_workers is False and backend.worker_extras() == []
    calls = (
        lambda: backend.launch_worker(0, {}),
        backend.list_workers,
        lambda: backend.terminate_worker(PoolWorker(0, "x")),
    )
    for call in calls:
        with pytest.raises(BackendError) as caught:
            call()
        assert str(caught.value) == "the plain backend cannot run warm workers"


def test_the_worker_index_variable_is_the_pools() -> None:
    assert WORKER_INDEX_ENV == WORKER_ENV


def test_a_warm_workers_env_drops_the_attempt_and_adds_its_index_and_the_pools_settings() -> None:
    base = {"HPO_STUDY": "s", "HPO_TRIAL": "3", "HPO_ATTEMPT": "1", "HPO_VOLUME": "/workspace", "PATH": "/bin"}
    env = warm_worker_env(base, 7, {"HPO_WORKER_IDLE_LIMIT": "120", "HPO_WORKER": "7"})
    assert env == {"HPO_STUDY": "s", "HPO_VOLUME": "/workspace", "PATH": "/bin", "HPO_WORKER": "7", "HPO_WORKER_IDLE_LIMIT": "120"}
    for bad in ({"HPO_TRIAL": "1"}, {"HPO_VOLUME": "/elsewhere"}, {"HPO_WORKER": "8"}):
        with pytest.raises(BackendError, match="worker 7: its environment may not"):
            warm_worker_env(base, 7, bad)
    with pytest.raises(BackendError, match="negative"):
        warm_worker_env(base, -1, {})
