"""``/_fake/...``: the Python API's knobs over HTTP, so a rehearsing user can poke the fake with curl.

These routes are the fake's own (RunPod has nothing like them) and need no
key: the server listens on loopback only. Examples::

    curl -X POST localhost:8765/_fake/pods/abc123/preempt
    curl -X POST localhost:8765/_fake/pods/abc123/kill      # SIGKILL its container (RunPod restarts it)
    curl -X POST localhost:8765/_fake/capacity -d '{"gpuTypeId": "NVIDIA RTX A5000", "available": 0}'
    curl -X POST localhost:8765/_fake/faults -d '{"kind": "create_then_500", "times": 1}'
    curl -X POST localhost:8765/_fake/faults -d '{"kind": "server_error", "times": 0, "seconds": 120}'  # an outage
    curl -X POST localhost:8765/_fake/balance -d '{"usd": 0}'
    curl localhost:8765/_fake/pods
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hpo.fake_runpod._errors import Refused
from hpo.fake_runpod._http import problem
from hpo.fake_runpod._state import Account, FakePodView


class ControlApi:
    """The ``/_fake`` routes, bound to one account."""

    def __init__(self, account: Account) -> None:
        self.account = account

    def routes(self) -> list[Route]:
        """Starlette routes of the control API."""
        return [
            Route("/_fake/pods", self.pods, methods=["GET"]),
            Route("/_fake/pods/{id}/preempt", self.preempt, methods=["POST"]),
            Route("/_fake/pods/{id}/kill", self.kill, methods=["POST"]),
            Route("/_fake/capacity", self.capacity, methods=["POST"]),
            Route("/_fake/pools", self.pools, methods=["POST"]),
            Route("/_fake/faults", self.faults, methods=["POST"]),
            Route("/_fake/balance", self.balance, methods=["GET", "POST"]),
            Route("/_fake/clock", self.clock, methods=["GET", "POST"]),
        ]

    async def pods(self, request: Request) -> Response:
        """Every pod with its fake-side details (pids, billing); ``?includeTerminated=false`` hides terminated ones."""
        include = request.query_params.get("includeTerminated", "true").lower() != "false"
        return JSONResponse({"pods": [view_json(v) for v in self.account.pods(include_terminated=include)]})

    async def preempt(self, request: Request) -> Response:
        """Preempt a spot pod now (404 unknown, 409 on-demand or not live)."""
        try:
            view = self.account.preempt(request.path_params["id"])
        except Refused as refused:
            return problem(refused.kind.status, refused.message)
        return JSONResponse(view_json(view))

    async def kill(self, request: Request) -> Response:
        """SIGKILL a pod's container now, as the OOM killer would (404 unknown, 409 no container running)."""
        try:
            view = self.account.kill(request.path_params["id"])
        except Refused as refused:
            return problem(refused.kind.status, refused.message)
        return JSONResponse(view_json(view))

    async def capacity(self, request: Request) -> Response:
        """``{"gpuTypeId": ..., "available": n | null}``: how many more pods of that type can be placed."""
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        available = body.get("available")
        if available is not None and not isinstance(available, int):
            return problem(422, "available must be an integer or null")
        try:
            self.account.set_capacity(str(body.get("gpuTypeId")), available)
        except ValueError as exc:
            return problem(400, str(exc))
        return JSONResponse({"gpuTypeId": body.get("gpuTypeId"), "available": available})

    async def pools(self, request: Request) -> Response:
        """``{"gpuTypeId": ..., "denied": true|false}``: creates of that type answer 403 while denied."""
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        denied = bool(body.get("denied", True))
        try:
            self.account.set_pool_denied(str(body.get("gpuTypeId")), denied)
        except ValueError as exc:
            return problem(400, str(exc))
        return JSONResponse({"gpuTypeId": body.get("gpuTypeId"), "denied": denied})

    async def faults(self, request: Request) -> Response:
        """``{"kind": "create_then_500" | "server_error" | "rate_limit", "times": n, "seconds": s}``.

        ``times``: the next n account requests fail; ``seconds``: every one does for s fake seconds (a burst).
        """
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        times = body.get("times", 1)
        if not isinstance(times, int):
            return problem(422, "times must be an integer")
        seconds = body.get("seconds", 0)
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            return problem(422, "seconds must be a number")
        try:
            self.account.inject_fault(str(body.get("kind")), times, seconds=float(seconds))
        except ValueError as exc:
            return problem(400, str(exc))
        return JSONResponse({"kind": body.get("kind"), "times": times, "seconds": seconds})

    async def balance(self, request: Request) -> Response:
        """GET the balance; POST ``{"usd": x}`` to set it (creates answer 402 at or below 0)."""
        if request.method == "POST":
            body = await _json_object(request)
            if isinstance(body, Response):
                return body
            usd = body.get("usd")
            if not isinstance(usd, int | float) or isinstance(usd, bool):
                return problem(422, "usd must be a number")
            self.account.set_balance(float(usd))
        return JSONResponse({"usd": self.account.balance()})

    async def clock(self, request: Request) -> Response:
        """GET the fake time; POST ``{"seconds": s}`` to jump it forward."""
        if request.method == "POST":
            body = await _json_object(request)
            if isinstance(body, Response):
                return body
            seconds = body.get("seconds")
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
                return problem(422, "seconds must be a number >= 0")
            self.account.clock.advance(float(seconds))
            self.account.tick()
        now = self.account.clock.now()
        return JSONResponse({"now": now, "time": self.account.clock.iso(now)})


def view_json(view: FakePodView) -> dict[str, Any]:
    """A pod snapshot as JSON (paths as strings, the create request nested)."""
    out: dict[str, Any] = {}
    for item in dataclasses.fields(view):
        value = getattr(view, item.name)
        if item.name == "request":
            value = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(value).items()}
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[item.name] = value
    return out


async def _json_object(request: Request) -> dict[str, Any] | Response:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return problem(400, "request body is not valid JSON")
    if not isinstance(body, dict):
        return problem(400, "request body must be a JSON object")
    return body
