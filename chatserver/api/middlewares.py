"""Every HTTP middleware, in the order a request passes them (`MIDDLEWARES`).

1. `bypass_for_sockets`: a websocket upgrade on the socket route goes straight to its handler.
   Each `async def` middleware, once entered, stays suspended until the handler returns, which for
   a websocket is its whole life (~0.3 KiB per middleware per socket); none of them does anything
   for that route (it authenticates itself and answers with close codes), so this first one, a
   plain function, skips them all. A request to that route that is not an upgrade goes through
   them all (and gets problem+json).
2. `metrics_middleware`: counts requests by route, method and status.
3. `cors_middleware`: CORS for browser clients on allowed origins (`[server] cors_origins`).
4. `problem_middleware`: renders `Problem`s (and aiohttp's HTTP errors) as RFC 9457
   problem+json; anything else is a 500 with a request id and no internals.
5. `outage_middleware`: whatever escapes a handler and means "the database is away" (see
   `chatserver.db.errors`) becomes a 503 with code `unavailable` and a Retry-After of
   `[outages] retry_after` seconds. Nothing is remembered: the next request tries the pool again.
6. `auth_middleware`: every route but the public ones needs a bearer credential; rate limits
   (failed authentications per client address before the credential is looked at, then requests
   per key).
7. `schema_middleware`: request bodies checked against the OpenAPI document.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Middleware

from chatserver.appkeys import (
    AUTH_THROTTLE,
    BODY_VALIDATORS,
    DB_POOL,
    KEY_CACHE,
    METRICS,
    PRINCIPAL,
    RATE_LIMITER,
    SETTINGS,
    TOKENS,
)
from chatserver.auth.keys import bearer_token
from chatserver.auth.origins import origin_listed
from chatserver.auth.tokens import authenticate
from chatserver.db.errors import UNAVAILABLE_ERRORS
from chatserver.openapi.validate import check_body
from chatserver.problems import (
    REQUEST_ID,
    Handler,
    Problem,
    ValidationProblem,
    from_http_exception,
    problem_response,
    unauthorized,
    unavailable,
)
from chatserver.server.logs import printable
from chatserver.validation import read_json_object

log = logging.getLogger(__name__)

SOCKET_ROUTES = frozenset({"conversation_socket"})
# Route names that anyone may call. The websocket authenticates itself (it answers with close
# codes, which browsers can read, instead of HTTP statuses). "index", "docs" and "static" are the
# browser pages (chatserver/api/static.py).
PUBLIC_ROUTES = frozenset({"healthz", "readyz", "metrics", "openapi", "conversation_socket",
                           "index", "docs", "static"})
# The only routes a browser token (scoped to one conversation) may call (PATCH: an agent token,
# on its own messages; the services check the rest).
TOKEN_ROUTES = frozenset({"list_messages", "post_message", "update_message",
                          "list_participants", "mark_read"})
# ...and the run routes (read runs, stop one, answer; an agent token also starts and moves its
# own runs: the run service checks who may).
TOKEN_RUN_ROUTES = frozenset({"list_runs", "get_run", "cancel_run", "answer_action",
                              "create_run", "update_run"})
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
EXPOSE_HEADERS = "Link, Retry-After, X-Request-Id, Idempotent-Replayed"
PREFLIGHT_MAX_AGE = "600"
# A caller's X-Request-Id is reused only if it is short and plain (it goes into logs).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def route_name(request: web.Request) -> str:
    """The route's name, the same at the root and under /api ("" for an unmatched path)."""
    name = request.match_info.route.name or ""
    return name.removeprefix("api.")


@web.middleware
def bypass_for_sockets(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    if (request.headers.get("Upgrade", "").lower() == "websocket"
            and route_name(request) in SOCKET_ROUTES):
        return request.match_info.handler(request)  # type: ignore[no-any-return]
    return handler(request)



@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        # Unmatched paths share one label so scanners cannot blow up the series count.
        route = route_name(request) or "unmatched"
        m = request.app[METRICS]
        m.http_requests.labels(route, request.method, str(status)).inc()
        m.http_duration.labels(route).observe(time.perf_counter() - started)



@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if not origin_listed(request.app[SETTINGS].server.cors_origins, origin):
        return await handler(request)
    assert origin is not None
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204, headers={
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        })
    else:
        response = await handler(request)
    if not response.prepared:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        response.headers["Vary"] = "Origin"
    return response



@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")
    if not _REQUEST_ID.fullmatch(request_id):
        request_id = uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except Problem as problem:
        return problem_response(problem, request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(from_http_exception(exc), request_id)
    except Exception:
        log.exception("unhandled error, request_id=%s %s %s", request_id, request.method,
                      printable(request.rel_url.path))
        return problem_response(Problem(500, "internal error; quote the request_id"), request_id)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response



@web.middleware
async def outage_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    retry_after = request.app[SETTINGS].outages.retry_after
    try:
        return await handler(request)
    except Problem as problem:
        if problem.status == 503:
            problem.headers.setdefault("Retry-After", str(retry_after))
        raise
    except UNAVAILABLE_ERRORS as exc:
        log.warning("database unavailable: %s %s: %r", request.method,
                    printable(request.rel_url.path), exc)
        raise unavailable(retry_after) from exc



@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None or route_name(request) in PUBLIC_ROUTES:
        return await handler(request)
    # An address that failed too often is refused before its credential costs a lookup.
    address, throttle = request.remote or "", request.app[AUTH_THROTTLE]
    if wait := throttle.wait(address):
        request.app[METRICS].rate_limited.labels("failed_auths_per_address").inc()
        raise Problem(429, "too many failed authentications from this address; retry later",
                      headers={"Retry-After": str(math.ceil(wait))})
    token = bearer_token(request)
    who = await authenticate(request.app[DB_POOL], request.app[TOKENS], token,
                             request.app[KEY_CACHE])
    if who is None:
        throttle.take(address)
        raise unauthorized("unknown or revoked API key, or a bad or expired token")
    if who.conversation_id is not None and route_name(request) not in (
            TOKEN_ROUTES | TOKEN_RUN_ROUTES):
        raise Problem(403, "a browser token may only use its conversation's messages, "
                                "participants and runs")
    wait = request.app[RATE_LIMITER].take(who.rate_key)
    if wait:
        request.app[METRICS].rate_limited.labels("requests_per_key").inc()
        raise Problem(429, "too many requests for this key; retry later",
                      headers={"Retry-After": str(math.ceil(wait))})
    request[PRINCIPAL] = who
    return await handler(request)



@web.middleware
async def schema_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    validators = request.app[BODY_VALIDATORS]
    route = route_name(request)
    if route in validators:
        body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
        problems = check_body(validators, route, body)
        if problems:
            raise ValidationProblem(problems)
    return await handler(request)


MIDDLEWARES: list[Middleware] = [
    bypass_for_sockets, metrics_middleware, cors_middleware, problem_middleware,
    outage_middleware, auth_middleware, schema_middleware,
]
