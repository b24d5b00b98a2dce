"""Authentication: every route but the public ones needs a bearer credential."""

from __future__ import annotations

import math

from aiohttp import web

from chatserver.appkeys import DB_POOL, KEY_CACHE, METRICS, PRINCIPAL, RATE_LIMITER, TOKENS
from chatserver.auth.keys import bearer_token
from chatserver.auth.tokens import authenticate
from chatserver.problems import Handler, Problem, unauthorized

# Route names (without the "api." prefix) that anyone may call. The websocket authenticates itself
# (it answers with close codes, which browsers can read, instead of HTTP statuses). "index" and
# "static" are the browser page (chatserver/api/static.py).
PUBLIC_ROUTES = frozenset({"healthz", "readyz", "metrics", "openapi", "conversation_socket",
                           "index", "static"})
# The only routes a browser token (scoped to one conversation) may call.
TOKEN_ROUTES = frozenset({"list_messages"})


def route_name(request: web.Request) -> str:
    name = request.match_info.route.name or ""
    return name.removeprefix("api.")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None or route_name(request) in PUBLIC_ROUTES:
        return await handler(request)
    token = bearer_token(request)
    who = await authenticate(request.app[DB_POOL], request.app[TOKENS], token,
                             request.app[KEY_CACHE])
    if who is None:
        raise unauthorized("unknown or revoked API key, or a bad or expired token")
    if who.conversation_id is not None and route_name(request) not in TOKEN_ROUTES:
        raise Problem(403, "a browser token may only read its conversation's messages")
    wait = request.app[RATE_LIMITER].take(who.rate_key)
    if wait:
        request.app[METRICS].rate_limited.labels("requests_per_key").inc()
        raise Problem(429, "too many requests for this key; retry later",
                      headers={"Retry-After": str(math.ceil(wait))})
    request[PRINCIPAL] = who
    return await handler(request)
