"""GET /metrics (Prometheus text format) and the middleware that counts HTTP requests."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chatserver.api.middleware import route_name
from chatserver.appkeys import METRICS
from chatserver.problems import Handler


async def metrics(request: web.Request) -> web.Response:
    await request.app[METRICS].refresh()
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


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
