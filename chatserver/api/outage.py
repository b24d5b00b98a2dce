"""While Postgres is unreachable: 503 problem+json with Retry-After, for every route, in one place.

Handlers never catch connection errors themselves. Whatever escapes them and means "the database
is away" (see `chatserver.db.errors`) becomes a 503 with code `unavailable` and a Retry-After of
`[outages] retry_after` seconds; a 503 raised by a service without one gets the header too. Nothing
is remembered about the failure: the next request tries the pool again, which reconnects on its own.
"""

from __future__ import annotations

import logging

from aiohttp import web

from chatserver.appkeys import SETTINGS
from chatserver.db.errors import UNAVAILABLE_ERRORS
from chatserver.problems import Handler, Problem

log = logging.getLogger("chatserver.outage")

CODE = "unavailable"


def unavailable(retry_after: int) -> Problem:
    return Problem(503, "the database is unavailable; retry later", code=CODE,
                   headers={"Retry-After": str(retry_after)})


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
        log.warning("database unavailable: %s %s: %r", request.method, request.rel_url.path, exc)
        raise unavailable(retry_after) from exc
