"""``FakeRunPod``: a RunPod stand-in on loopback, run by uvicorn in a background thread.

Tests, benchmarks and rehearsals point the real clients at ``fake.url``
(``HPO_RUNPOD_REST_URL`` for REST v2, ``RUNPOD_API_BASE_URL`` for GraphQL and the
runpod SDK); pods run ``pod_command`` as local processes. A ticker thread
drives the pods on the fake clock so processes start and die on time even
when nobody is calling the API.
"""

from __future__ import annotations

import atexit
import logging
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn

from hpo.fake_runpod._app import allowed_hosts, build_app
from hpo.fake_runpod._catalog import DEFAULT_DATA_CENTER, BidFloor
from hpo.fake_runpod._clock import FakeClock
from hpo.fake_runpod._errors import Refusal, Refused
from hpo.fake_runpod._state import REST_URL_VARS, Account, FakePodView, PodCommand, Timing, Volume

log = logging.getLogger(__name__)

TICK_SECONDS = 0.02
"""Real seconds between two ticks of the pods' state machine."""


def random_api_key() -> str:
    """A fresh account key, for a fake started without one: never a default anyone else could know."""
    return "fake-" + secrets.token_urlsafe(24)


class FakeRunPod:
    """A fake RunPod account with a REST v2 + GraphQL server; see the package docstring for the behaviour."""

    def __init__(
        self,
        *,
        volumes: Mapping[str, Path | str] | None = None,
        volume_data_center: str | Mapping[str, str] = DEFAULT_DATA_CENTER,
        api_keys: set[str] | frozenset[str] | None = None,
        time_scale: float = 20.0,
        provision_seconds: float = 10.0,
        start_seconds: float = 5.0,
        kill_grace_seconds: float = 5.0,
        preempt_rate_per_hour: float = 0.0,
        seed: int = 0,
        balance_usd: float = 100.0,
        pod_command: PodCommand | None = None,
        restart_delay_seconds: float = 2.0,
        workdir: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        bid_floor_swing: float = 0.0,
        bid_floor_period_seconds: float = 3600.0,
        outbid_preemption: bool = True,
        registries: Mapping[str, str] | None = None,
        private_images: tuple[str, ...] | list[str] = (),
        pod_key_rest: bool = True,
        pod_key_graphql: bool = True,
        graphql_retired: bool = False,
    ) -> None:
        """Configure the account; nothing runs until :meth:`start`.

        ``volumes`` maps network volume ids to the local folders standing in
        for them; ``volume_data_center`` is the data center of all of them, or
        a mapping per volume id. Durations are fake seconds; ``time_scale`` is
        fake seconds per real second. ``api_keys`` are the account's keys;
        without any, a random key is made for this fake (``api_key``), never
        a fixed default: the fake runs pods as local processes with the
        user's rights, so whoever holds its key can run commands here.

        Market and account knobs: ``bid_floor_swing`` (0 = a fixed floor at
        the published spot price) and ``bid_floor_period_seconds`` make the
        minimum bid move over fake time, per GPU type and data center,
        deterministically from ``seed`` (:class:`BidFloor`); with
        ``outbid_preemption`` a spot pod whose bid falls below the moving
        floor is preempted (SIGTERM, then SIGKILL, EXITED). ``registries``
        maps container registry credential names to ids (``GET
        /v2/registries``); ``private_images`` are image prefixes whose pull
        fails (pod ERROR) unless the create names a credential.
        ``pod_key_rest``/``pod_key_graphql`` say whether a pod's scoped key
        may use REST v2 (its own pod) and GraphQL (its own ``podTerminate``);
        ``graphql_retired`` makes ``/graphql`` answer 410 as a retired API.
        """
        self.clock = FakeClock(time_scale)
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="fake-runpod-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # No key given: a random one for this fake (read it from ``api_key`` or ``client_env()``).
        self.api_keys = frozenset(api_keys) if api_keys else frozenset({random_api_key()})
        volume_objects: dict[str, Volume] = {}
        for volume_id, folder in (volumes or {}).items():
            if isinstance(volume_data_center, str):
                data_center = volume_data_center
            else:
                data_center = volume_data_center.get(volume_id, DEFAULT_DATA_CENTER)
            path = Path(folder)
            path.mkdir(parents=True, exist_ok=True)
            volume_objects[volume_id] = Volume(volume_id, path.resolve(), data_center, name=volume_id)
        self.account = Account(
            clock=self.clock,
            volumes=volume_objects,
            api_keys=set(self.api_keys),
            timing=Timing(
                provision_seconds=provision_seconds,
                start_seconds=start_seconds,
                kill_grace_seconds=kill_grace_seconds,
                restart_delay_seconds=restart_delay_seconds,
                preempt_rate_per_hour=preempt_rate_per_hour,
            ),
            balance_usd=balance_usd,
            pod_command=pod_command,
            workdir=self.workdir,
            seed=seed,
            bid_floor=BidFloor(bid_floor_swing, bid_floor_period_seconds, seed),
            outbid_preemption=outbid_preemption,
            registries=registries,
            private_images=tuple(private_images),
        )
        self.account.pod_key_rest = pod_key_rest
        self.account.pod_key_graphql = pod_key_graphql
        self.account.graphql_retired = graphql_retired
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Listen on loopback (a free port unless one was given) and start ticking; returns self."""
        if self._server is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        sock.listen(128)
        self._socket = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.account.api_url = self.url
        app = build_app(self.account, allowed_hosts(port, host))
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-runpod-server", daemon=True
        )
        self._server_thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._server_thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake RunPod server did not start")
            time.sleep(0.005)
        self._stopping.clear()
        self._ticker = threading.Thread(target=self._tick_forever, name="fake-runpod-ticker", daemon=True)
        self._ticker.start()
        atexit.register(self.stop)  # never leave pod processes behind, even if the caller forgets
        return self

    def stop(self) -> None:
        """SIGKILL every pod's process group and stop the server (idempotent)."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        self.account.close()
        if self._server is not None:
            self._server.should_exit = True
            if self._server_thread is not None:
                self._server_thread.join(timeout=10)
            self._server = None
            self._server_thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        atexit.unregister(self.stop)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _tick_forever(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            try:
                self.account.tick()
            except Exception:  # the ticker must outlive any one bad tick
                log.exception("fake RunPod: tick failed")

    # ------------------------------------------------------------------ clients

    @property
    def api_key(self) -> str:
        """One account API key (the first in sorted order), for clients."""
        return min(self.api_keys)

    def client_env(self) -> dict[str, str]:
        """The variables that point RunPod clients (this project's backend, the runpod SDK) at this fake.

        The REST v2 base goes in every name this project's client has read it
        from (:data:`REST_URL_VARS`); ``RUNPOD_API_BASE_URL`` is the GraphQL
        base, as the runpod SDK reads it. The SDK takes its key from
        ``runpod.api_key`` (or ``~/.runpod/config.toml``), not from the
        environment: see :func:`sdk_hint`.
        """
        env = dict.fromkeys(REST_URL_VARS, self.url)
        env["RUNPOD_API_BASE_URL"] = self.url
        env["RUNPOD_API_KEY"] = self.api_key
        return env

    def sdk_hint(self) -> str:
        """A comment line saying how to point the official ``runpod`` SDK (1.12) at this fake."""
        return (
            "# runpod SDK: export RUNPOD_API_BASE_URL as above, then in Python "
            '`import os, runpod; runpod.api_key = os.environ["RUNPOD_API_KEY"]` '
            "(the SDK reads its key from runpod.api_key or ~/.runpod/config.toml, not from the environment)"
        )

    # ------------------------------------------------------------------ clock

    def now(self) -> float:
        """The fake clock, in fake seconds since the fake was made."""
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        """Jump the fake clock forward and apply what fell due (billing, phases, kills) at once."""
        self.clock.advance(seconds)
        self.account.tick()

    # ------------------------------------------------------------------ knobs

    def preempt(self, pod_id: str) -> FakePodView:
        """Spot preemption now: SIGTERM to the group, SIGKILL ``kill_grace_seconds`` later, then EXITED.

        Raises KeyError for an unknown or terminated pod, ValueError for an
        on-demand pod or one that is no longer live.
        """
        try:
            return self.account.preempt(pod_id)
        except Refused as refused:
            if refused.kind is Refusal.NOT_FOUND:
                raise KeyError(pod_id) from None
            raise ValueError(refused.message) from None

    def terminate(self, pod_id: str) -> FakePodView:
        """Terminate a pod as ``DELETE /v2/pods/{id}`` would (KeyError if unknown or already terminated)."""
        try:
            return self.account.terminate(pod_id)
        except Refused:
            raise KeyError(pod_id) from None

    def set_capacity(self, gpu_type_id: str, n: int | None) -> None:
        """How many more pods of that GPU type (or CPU flavor) can be placed: 0 = sold out, None = unlimited."""
        self.account.set_capacity(gpu_type_id, n)

    def deny_pool(self, gpu_type_id: str) -> None:
        """Creates of that GPU type (or CPU flavor) answer 403 (the account has no access to that pool)."""
        self.account.set_pool_denied(gpu_type_id, True)

    def allow_pool(self, gpu_type_id: str) -> None:
        """Undo :meth:`deny_pool`."""
        self.account.set_pool_denied(gpu_type_id, False)

    def inject_fault(self, kind: str, times: int = 1) -> None:
        """Make the next ``times`` requests fail as ``kind`` (see ``FAULT_KINDS``: ``create_then_500``, ...)."""
        self.account.inject_fault(kind, times)

    def set_pod_key_access(self, *, rest: bool | None = None, graphql: bool | None = None) -> None:
        """Allow or refuse pods' scoped keys on REST v2 and/or GraphQL (None leaves that API as it is)."""
        if rest is not None:
            self.account.pod_key_rest = rest
        if graphql is not None:
            self.account.pod_key_graphql = graphql

    def retire_graphql(self, retired: bool = True) -> None:
        """Make ``/graphql`` answer as a retired API (HTTP 410), or bring it back."""
        self.account.graphql_retired = retired

    def minimum_bid(self, gpu_type_id: str, data_center: str | None = None, cloud: str = "SECURE") -> float | None:
        """The spot floor per GPU now, where ``lowestPrice`` would report it (None: no spot offer)."""
        return self.account.minimum_bid(gpu_type_id, cloud, data_center)

    def set_balance(self, usd: float) -> None:
        """Set the account balance; creates answer 402 while it is <= 0, and at 0 running pods are stopped."""
        self.account.set_balance(usd)

    def balance(self) -> float:
        """The account balance now, in USD."""
        return self.account.balance()

    # ------------------------------------------------------------------ inspection

    def pods(self, include_terminated: bool = True) -> list[FakePodView]:
        """Snapshots of the pods, in creation order."""
        return self.account.pods(include_terminated=include_terminated)

    def pod(self, pod_id: str) -> FakePodView:
        """A snapshot of one pod, terminated or not (KeyError if it never existed)."""
        view = self.account.get(pod_id, include_terminated=True)
        if view is None:
            raise KeyError(pod_id)
        return view

    def secret_names(self) -> list[str]:
        """The names of the account's secrets, sorted (their values are never exposed, here or over HTTP)."""
        return self.account.secrets.names()

    def wait_for(self, pod_id: str, status: str, timeout: float = 10.0) -> FakePodView:
        """Poll until the pod has ``status`` (real-time ``timeout``; TimeoutError with the last status)."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.pod(pod_id)
            if view.status == status:
                return view
            if time.monotonic() > deadline:
                raise TimeoutError(f"pod {pod_id} is {view.status}, not {status}, after {timeout}s")
            time.sleep(0.01)
