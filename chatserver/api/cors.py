"""CORS for browser clients on other origins: allowed origins are a setting (none by default)."""

from __future__ import annotations

from aiohttp import web

from chatserver.appkeys import SETTINGS
from chatserver.problems import Handler

ALLOW_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
EXPOSE_HEADERS = "Link, Retry-After, X-Request-Id, Idempotent-Replayed"
PREFLIGHT_MAX_AGE = "600"


def origin_allowed(origins: tuple[str, ...], origin: str | None) -> bool:
    return origin is not None and ("*" in origins or origin in origins)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if not origin_allowed(request.app[SETTINGS].server.cors_origins, origin):
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
