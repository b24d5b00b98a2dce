"""Liveness (/healthz) and readiness (/readyz) probes."""

from __future__ import annotations

import asyncio

from aiohttp import web

from chatserver.api.responses import json_response
from chatserver.appkeys import DB_POOL, HUB

READY_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with request.app[DB_POOL].acquire() as conn:
                await conn.fetchval("SELECT 1")
        checks["database"] = "ok"
    except (OSError, asyncio.TimeoutError, Exception) as exc:  # any failure means not ready
        checks["database"] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    # Reported, not required: with the bus down, posting and local delivery go on, and every room
    # is filled from Postgres when it is back.
    bus = {"state": str(request.app[HUB].bus.state)} if HUB in request.app else {}
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks, "bus": bus},
        status=200 if ready else 503,
    )
