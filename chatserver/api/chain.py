"""The middleware chain of every request, which a websocket upgrade passes straight through.

Each middleware is an `async def`: entered, its coroutine stays suspended until the handler
returns, which for a websocket is the socket's whole life (~0.3 KiB per middleware per socket,
1.8 KiB for the six). None of them does anything for the socket route (it authenticates itself,
answers with close codes, has no body, and counts itself in its own gauges), so for that route
each one is a plain function call that hands back the handler's coroutine, and no frame stays.
A request to that route that is not an upgrade goes through them all (and gets problem+json).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from chatserver.api.middleware import route_name
from chatserver.problems import Handler

SOCKET_ROUTES = frozenset({"conversation_socket"})


def rest_only(middleware: Middleware) -> Middleware:
    @web.middleware
    @functools.wraps(middleware)
    def passing_sockets(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if (route_name(request) in SOCKET_ROUTES
                and request.headers.get("Upgrade", "").lower() == "websocket"):
            return handler(request)
        return middleware(request, handler)

    return passing_sockets


def middleware_chain(middlewares: Iterable[Middleware]) -> list[Middleware]:
    return [rest_only(m) for m in middlewares]
