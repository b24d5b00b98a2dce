"""The middleware chain of every request, which a websocket upgrade skips entirely.

Each middleware is an `async def`: entered, its coroutine stays suspended until the handler
returns, which for a websocket is the socket's whole life (~0.3 KiB per middleware per socket,
1.8 KiB for the six). None of them does anything for the socket route (it authenticates itself,
answers with close codes, has no body, and counts itself in its own gauges), so the first
middleware, a plain function, hands a websocket upgrade on that route straight to the route's
handler: no middleware frame stays. A request to that route that is not an upgrade goes through
them all (and gets problem+json).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from chatserver.api.middleware import route_name
from chatserver.problems import Handler

SOCKET_ROUTES = frozenset({"conversation_socket"})


@web.middleware
def bypass_for_sockets(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    if (request.headers.get("Upgrade", "").lower() == "websocket"
            and route_name(request) in SOCKET_ROUTES):
        return request.match_info.handler(request)  # type: ignore[no-any-return]
    return handler(request)


def middleware_chain(middlewares: Iterable[Middleware]) -> list[Middleware]:
    return [bypass_for_sockets, *middlewares]
