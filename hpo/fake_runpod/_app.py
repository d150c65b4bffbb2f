"""The fake's ASGI app: REST v2, GraphQL and the ``/_fake`` control routes on one port.

Unknown paths and methods answer RunPod-style problems (404/405), and an
unexpected exception answers 500 the same way, so a client under test never
sees a shape RunPod would not send.

Every request must name the fake itself in its ``Host`` header (a loopback
name and the fake's port): a web page that rebinds its own DNS name to
127.0.0.1 (DNS rebinding) still sends its own name, and is answered 421, so a
browser can never drive the fake on a page's behalf.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hpo.fake_runpod._catalog import SOMETHING_WENT_WRONG
from hpo.fake_runpod._control import ControlApi
from hpo.fake_runpod._graphql import GraphQLApi
from hpo.fake_runpod._http import problem
from hpo.fake_runpod._rest import RestApi
from hpo.fake_runpod._state import Account

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(port: int, bound_host: str = "127.0.0.1") -> frozenset[str]:
    """The ``Host`` header values that name a fake listening on ``bound_host:port``.

    Loopback names with the port (and without it on port 80, where clients
    leave it out), plus the bound address itself when it is a specific one.
    """
    names = set(LOOPBACK_NAMES)
    if bound_host not in ("", "0.0.0.0", "::"):
        names.add(f"[{bound_host}]" if ":" in bound_host else bound_host)
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts |= names
    return frozenset(hosts)


class HostGuard:
    """ASGI middleware: answer 421 (a RunPod-style problem) to any request whose ``Host`` is not one of ``hosts``."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(host.lower() for host in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = ""
            for name, value in scope.get("headers", ()):
                if name == b"host":
                    host = value.decode("latin-1").strip().lower()
                    break
            if host not in self.hosts:
                shown = host[:100] or "(none)"
                response = problem(
                    421,
                    f"Host {shown!r} is not this server: the fake RunPod answers only to 127.0.0.1, "
                    f"localhost or [::1] with its port (DNS rebinding protection)",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(account: Account, hosts: Iterable[str] | None = None) -> ASGIApp:
    """One Starlette app serving every surface of the fake over ``account``; behind a ``Host`` check if ``hosts``."""
    rest = RestApi(account)
    graphql = GraphQLApi(account)
    control = ControlApi(account)
    routes = [*rest.routes(), Route("/graphql", graphql.endpoint, methods=["POST"]), *control.routes()]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _crash},
    )
    return app if hosts is None else HostGuard(app, hosts)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return problem(404, "resource not found")
    if status == 405:
        return problem(405, "The requested method is not allowed for this path.")
    return problem(status, str(getattr(exc, "detail", "")) or "request failed")


async def _crash(request: Request, exc: Exception) -> Response:
    log.error("fake RunPod: %s %s failed", request.method, request.url.path, exc_info=exc)
    return problem(500, SOMETHING_WENT_WRONG)
