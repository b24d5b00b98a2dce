"""Authentication: every route but the public ones needs a bearer credential."""

from __future__ import annotations

import math

from aiohttp import web

from chatserver.appkeys import DB_POOL, METRICS, PRINCIPAL, RATE_LIMITER
from chatserver.auth import bearer_token, principal_for_key
from chatserver.problems import Handler, Problem, unauthorized

# Route names (without the "api." prefix) that anyone may call.
PUBLIC_ROUTES = frozenset({"healthz", "readyz", "metrics", "openapi"})


def route_name(request: web.Request) -> str:
    name = request.match_info.route.name or ""
    return name.removeprefix("api.")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None or route_name(request) in PUBLIC_ROUTES:
        return await handler(request)
    token = bearer_token(request)
    async with request.app[DB_POOL].acquire() as conn:
        who = await principal_for_key(conn, token)
    if who is None:
        raise unauthorized("unknown or revoked API key")
    wait = request.app[RATE_LIMITER].take(who.rate_key)
    if wait:
        request.app[METRICS].rate_limited.labels("requests_per_key").inc()
        raise Problem(429, "too many requests for this key; retry later",
                      headers={"Retry-After": str(math.ceil(wait))})
    request[PRINCIPAL] = who
    return await handler(request)
