"""``/_fake/...``: the Python API's knobs over HTTP, so a rehearsing user can poke the fake with curl.

These routes are the fake's own (RunPod has nothing like them). They need
the account's API key (``Authorization: Bearer``; a pod's own key is not
enough), and a POST must say ``Content-Type: application/json``: a web page
can send a cross-origin form or ``text/plain`` POST without asking, but
neither a key nor JSON, so no page the user visits can drive the fake.
Examples (``$RUNPOD_API_KEY`` as ``python -m hpo.fake_runpod`` prints it)::

    H=(-H "Authorization: Bearer $RUNPOD_API_KEY" -H "Content-Type: application/json")
    curl "${H[@]}" -X POST localhost:8765/_fake/pods/abc123/preempt
    curl "${H[@]}" -X POST localhost:8765/_fake/pods/abc123/kill      # SIGKILL its container (RunPod restarts it)
    curl "${H[@]}" localhost:8765/_fake/capacity -d '{"gpuTypeId": "NVIDIA RTX A5000", "available": 0}'
    curl "${H[@]}" localhost:8765/_fake/faults -d '{"kind": "create_then_500", "times": 1}'
    curl "${H[@]}" localhost:8765/_fake/faults -d '{"kind": "server_error", "times": 0, "seconds": 120}'  # an outage
    curl "${H[@]}" localhost:8765/_fake/balance -d '{"usd": 0}'
    curl "${H[@]}" localhost:8765/_fake/graphql -d '{"retired": true}'     # /graphql answers 410 from now on
    curl "${H[@]}" localhost:8765/_fake/pod-keys -d '{"rest": false}'      # pods' keys refused on REST v2
    curl "${H[@]}" localhost:8765/_fake/pods
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hpo.fake_runpod._errors import Refused
from hpo.fake_runpod._http import authenticate, problem
from hpo.fake_runpod._state import Account, FakePodView


class ControlApi:
    """The ``/_fake`` routes, bound to one account."""

    def __init__(self, account: Account) -> None:
        self.account = account

    def routes(self) -> list[Route]:
        """Starlette routes of the control API, each behind :meth:`guard`."""
        return [
            Route("/_fake/pods", self.guard(self.pods), methods=["GET"]),
            Route("/_fake/pods/{id}/preempt", self.guard(self.preempt), methods=["POST"]),
            Route("/_fake/pods/{id}/kill", self.guard(self.kill), methods=["POST"]),
            Route("/_fake/capacity", self.guard(self.capacity), methods=["POST"]),
            Route("/_fake/pools", self.guard(self.pools), methods=["POST"]),
            Route("/_fake/faults", self.guard(self.faults), methods=["POST"]),
            Route("/_fake/balance", self.guard(self.balance), methods=["GET", "POST"]),
            Route("/_fake/clock", self.guard(self.clock), methods=["GET", "POST"]),
            Route("/_fake/graphql", self.guard(self.graphql), methods=["GET", "POST"]),
            Route("/_fake/pod-keys", self.guard(self.pod_keys), methods=["GET", "POST"]),
        ]

    def guard(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind the control routes' gate: the account's key, and JSON for a POST.

        401 without a valid key, 403 for a pod's scoped key, 415 for a POST
        whose ``Content-Type`` is not ``application/json`` (a form or
        ``text/plain``: what a web page can send cross-origin unasked).
        """

        async def endpoint(request: Request) -> Response:
            refusal = self._refusal(request)
            return refusal if refusal is not None else await handler(request)

        return endpoint

    def _refusal(self, request: Request) -> Response | None:
        principal = authenticate(self.account, request)
        if isinstance(principal, Response):
            return principal
        if not principal.is_account:
            return problem(403, "the /_fake routes take the account's API key, not a pod's")
        if request.method == "POST":
            media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                shown = media_type[:60] or "none"
                return problem(415, f"the /_fake routes take Content-Type: application/json, not {shown}")
        return None

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

    async def graphql(self, request: Request) -> Response:
        """GET whether ``/graphql`` plays retired; POST ``{"retired": true|false}`` to switch it."""
        if request.method == "POST":
            body = await _json_object(request)
            if isinstance(body, Response):
                return body
            retired = body.get("retired")
            if not isinstance(retired, bool):
                return problem(422, "retired must be true or false")
            self.account.graphql_retired = retired
        return JSONResponse({"retired": self.account.graphql_retired})

    async def pod_keys(self, request: Request) -> Response:
        """GET which APIs pods' scoped keys may use; POST ``{"rest": bool, "graphql": bool}`` (either) to set them."""
        if request.method == "POST":
            body = await _json_object(request)
            if isinstance(body, Response):
                return body
            for name in ("rest", "graphql"):
                if name in body and not isinstance(body[name], bool):
                    return problem(422, f"{name} must be true or false")
            if "rest" in body:
                self.account.pod_key_rest = body["rest"]
            if "graphql" in body:
                self.account.pod_key_graphql = body["graphql"]
        return JSONResponse({"rest": self.account.pod_key_rest, "graphql": self.account.pod_key_graphql})


def view_json(view: FakePodView) -> dict[str, Any]:
    """A pod snapshot as JSON (paths as strings, the create request nested)."""
    out: dict[str, Any] = {}
    for item in dataclasses.fields(view):
        value = getattr(view, item.name)
        if item.name == "request":
            value = {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[item.name] = value
    return out


def _plain(value: Any) -> Any:
    """A request field as JSON takes it (tuples as lists, datetimes as ISO 8601)."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def _json_object(request: Request) -> dict[str, Any] | Response:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return problem(400, "request body is not valid JSON")
    if not isinstance(body, dict):
        return problem(400, "request body must be a JSON object")
    return body
