"""GET /metrics (Prometheus text format)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chatserver.appkeys import METRICS


async def metrics(request: web.Request) -> web.Response:
    await request.app[METRICS].refresh()
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
