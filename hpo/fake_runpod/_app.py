"""The fake's ASGI app: REST v2, GraphQL and the ``/_fake`` control routes on one port.

Unknown paths and methods answer RunPod-style problems (404/405), and an
unexpected exception answers 500 the same way, so a client under test never
sees a shape RunPod would not send.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hpo.fake_runpod._catalog import SOMETHING_WENT_WRONG
from hpo.fake_runpod._control import ControlApi
from hpo.fake_runpod._graphql import GraphQLApi
from hpo.fake_runpod._http import problem
from hpo.fake_runpod._rest import RestApi
from hpo.fake_runpod._state import Account

log = logging.getLogger(__name__)


def build_app(account: Account) -> Starlette:
    """One Starlette app serving every surface of the fake over ``account``."""
    rest = RestApi(account)
    graphql = GraphQLApi(account)
    control = ControlApi(account)
    routes = [*rest.routes(), Route("/graphql", graphql.endpoint, methods=["POST"]), *control.routes()]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _crash},
    )


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
