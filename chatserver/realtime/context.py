"""Wiring of the real-time parts: bus, hub, presence and token signer, made and closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, web

from chatserver.appkeys import DB_POOL, HUB, MESSAGES, PRESENCE, SETTINGS, SUPERVISOR, TOKENS
from chatserver.auth.tokens import TokenSigner, load_secret
from chatserver.bus import create_bus
from chatserver.bus.cluster import ClusterBus
from chatserver.bus.redis import RedisBus
from chatserver.realtime.hub import Hub
from chatserver.realtime.presence import MemoryPresence, Presence, RedisPresence


async def realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    options = settings.realtime
    pool = app[DB_POOL]
    bus = create_bus(settings.redis.url, backoff_max=options.bus_backoff_max,
                     stall_timeout=options.listener_stall_timeout, cluster=settings.redis.cluster,
                     refresh_interval=settings.redis.cluster_refresh_interval)
    presence: Presence = (
        RedisPresence(bus.client, options.presence_ttl) if isinstance(bus, RedisBus | ClusterBus)
        else MemoryPresence()
    )
    app[TOKENS] = TokenSigner(await load_secret(pool, options.token_secret))
    hub = Hub(pool, bus, options, app[SUPERVISOR],
              flush_interval=settings.performance.fanout_flush_interval)
    app[HUB] = hub
    app[PRESENCE] = presence
    await hub.start()
    await presence.start(app[SUPERVISOR])
    app[MESSAGES].events = hub
    yield
    app[MESSAGES].events = None
    await presence.close()
    await hub.close()


async def close_sockets(app: web.Application) -> None:
    """On shutdown: every websocket is closed with 1001 (going away), so clients reconnect."""
    if HUB in app:
        await app[HUB].shut_all(WSCloseCode.GOING_AWAY, "server shutting down")
