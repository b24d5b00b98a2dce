"""RFC 9457 problem details: the one shape of every error response.

Handlers and services raise `Problem` (or one of its helpers); `chatserver.api.middlewares`
renders it as `application/problem+json`. aiohttp's own HTTP errors (unknown route, wrong
method, body too large) are rendered the same way. Anything else is a 500 with a request id and
no internals.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# A caller's X-Request-Id is reused only if it is short and plain (it goes into logs).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    """An error to answer with: status, a short title, a detail and optional invalid params."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        invalid_params: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.invalid_params = list(invalid_params)
        self.headers = dict(headers or {})
        self.code = code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.code:
            body["code"] = self.code
        if self.invalid_params:
            body["invalid-params"] = [
                {"name": name, "reason": reason} for name, reason in self.invalid_params
            ]
        return body


class ValidationProblem(Problem):
    """400 naming each bad field."""

    def __init__(self, invalid_params: Iterable[tuple[str, str]], status: int = 400) -> None:
        params = list(invalid_params)
        detail = "; ".join(f"{name}: {reason}" for name, reason in params)
        super().__init__(status, detail, title="Invalid request", invalid_params=params)


class NotFound(Problem):
    """404: no such object, or one the caller's team may not see (the same answer for both)."""

    def __init__(self, what: str = "conversation") -> None:
        super().__init__(404, f"{what} not found")


def not_found(what: str = "conversation") -> NotFound:
    return NotFound(what)


def unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="chatserver"'})


class StoreUnavailable(Problem):
    """503: the database could not be reached (see `chatserver.db.errors`); retry later.

    Raised from the `UNAVAILABLE_ERRORS` that escape a handler (the outage middleware) or a
    service used from Python (the cause is chained), never kept as state.
    """

    def __init__(self, action: str | None = None, retry_after: int | None = None) -> None:
        doing = f"could not {action}: " if action else ""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        super().__init__(503, f"{doing}the database is unavailable; retry later",
                         code="unavailable", headers=headers)


def unavailable(retry_after: int) -> StoreUnavailable:
    return StoreUnavailable(retry_after=retry_after)


def problem_response(problem: Problem, request_id: str | None = None) -> web.Response:
    body = problem.body()
    if request_id:
        body["request_id"] = request_id
    headers = dict(problem.headers)
    if request_id:
        headers["X-Request-Id"] = request_id
    return web.Response(
        status=problem.status, body=orjson.dumps(body), content_type=PROBLEM_JSON, headers=headers
    )


def from_http_exception(exc: web.HTTPException) -> Problem:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    return Problem(exc.status, detail or exc.reason, headers=headers)
