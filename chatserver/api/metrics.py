"""GET /metrics (Prometheus text format), behind `[metrics] token` when one is set."""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chatserver.appkeys import METRICS, SETTINGS
from chatserver.problems import unauthorized


def check_scrape_token(request: web.Request) -> None:
    """401 unless the request carries `Authorization: Bearer <token>` (when `[metrics] token`
    is set)."""
    expected = request.app[SETTINGS].metrics.token
    if not expected:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # compare_digest on bytes: constant time, and no TypeError for non-ASCII header text.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode("utf-8", "surrogateescape"), expected.encode()
    ):
        raise unauthorized("send the [metrics] token as 'Authorization: Bearer <token>'")


async def metrics(request: web.Request) -> web.Response:
    check_scrape_token(request)
    await request.app[METRICS].refresh()
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
