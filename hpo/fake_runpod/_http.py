"""What every API route of the fake shares: RFC 9457 problems, API keys, injected faults.

RunPod v2 answers every failure as ``application/problem+json``
``{title, status, detail, errors?}``; keys come as ``Authorization: Bearer``
(GraphQL also takes ``?api_key=``, which old SDKs and the docs' curl use).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hpo.fake_runpod._catalog import SOMETHING_WENT_WRONG
from hpo.fake_runpod._state import Account, Principal

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 1


def problem(
    status: int, detail: str, *, errors: list[str] | None = None, headers: dict[str, str] | None = None
) -> Response:
    """An RFC 9457 problem response the way RunPod v2 shapes it."""
    body: dict[str, Any] = {"title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def bearer_key(request: Request, *, allow_query: bool = False) -> str | None:
    """The API key of a request: ``Authorization: Bearer <key>``, or ``?api_key=`` where allowed."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if allow_query:
        return request.query_params.get("api_key") or None
    return None


def authenticate(account: Account, request: Request) -> Principal | Response:
    """The caller, or the 401 problem to answer (a missing key and an unknown one read differently)."""
    key = bearer_key(request)
    if key is None:
        return problem(401, "missing bearer token")
    principal = account.principal(key)
    if principal is None:
        return problem(401, "invalid api key")
    return principal


def injected_fault(account: Account) -> Response | None:
    """The 429 or 500 a pending ``rate_limit``/``server_error`` fault turns this request into, if any."""
    if account.take_fault("rate_limit"):
        return problem(
            429, "rate limit exceeded for the minute window", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    if account.take_fault("server_error"):
        return problem(500, SOMETHING_WENT_WRONG)
    return None
