"""Liveness (/healthz) and readiness (/readyz) probes."""

from __future__ import annotations

import asyncio

from aiohttp import web

from chatserver.api.responses import json_response
from chatserver.appkeys import DB_POOL, HUB, SUPERVISOR

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
    except Exception as exc:  # any failure at all means not ready
        checks["database"] = f"unavailable: {type(exc).__name__}"
    supervisor = request.app[SUPERVISOR]
    ready = all(v == "ok" for v in checks.values()) and supervisor.healthy()
    # The bus is reported, not required: with it down, posting and local delivery go on, and
    # every room is filled from Postgres when it is back.
    bus: dict[str, object] = {}
    if HUB in request.app:
        hub_bus = request.app[HUB].bus
        bus["state"] = str(hub_bus.state)
        if nodes := hub_bus.node_states():  # a Redis Cluster's primaries
            bus["nodes"] = {name: str(state) for name, state in nodes.items()}
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks, "bus": bus,
         "tasks": supervisor.report()},
        status=200 if ready else 503,
    )
