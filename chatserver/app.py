"""The application factory: settings in, a wired aiohttp Application out.

Every pool and client is created and closed by a cleanup context, in dependency order.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from chatserver.api.middlewares import MIDDLEWARES
from chatserver.api.routes import setup_routes
from chatserver.appkeys import (
    AUTH_THROTTLE,
    CONVERSATIONS,
    DB_POOL,
    KEY_CACHE,
    METRICS,
    RATE_LIMITER,
    SECRET_BOX,
    SETTINGS,
    SHUTDOWN,
    SUPERVISOR,
    TEAM_ENDPOINTS,
    WEBHOOK_SENDER,
    WEBHOOKS,
)
from chatserver.auth.keycache import KeyCache
from chatserver.config import Settings
from chatserver.db.bootstrap import resolve_dsn, run_migrations
from chatserver.db.pool import create_pool
from chatserver.metrics import Metrics, StateCollector
from chatserver.ratelimit import KeyedLimiter
from chatserver.realtime.context import close_sockets, realtime_ctx
from chatserver.security.box import SecretBox
from chatserver.security.rotation import reseal_all, warn_without_key
from chatserver.server.memory import TRIM_TASK, trim_loop
from chatserver.server.shutdown import Shutdown
from chatserver.server.supervisor import Supervisor, TaskState
from chatserver.services.conversations import ConversationService
from chatserver.services.endpoints import TeamEndpointService
from chatserver.services.webhooks import WebhookService
from chatserver.webhooks.context import webhooks_ctx
from chatserver.webhooks.endpoints import WebhookEndpoints

log = logging.getLogger(__name__)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    dsn = await resolve_dsn(settings)
    await run_migrations(dsn, partitions=settings.database.partitions)
    pool = await create_pool(dsn, settings.database)
    app[DB_POOL] = pool
    watch_pool(app[METRICS], pool)
    box = app[SECRET_BOX]
    warn_without_key(box)
    try:
        async with pool.acquire() as conn:
            await reseal_all(conn, box)
    except BaseException:
        await pool.close()  # no start without readable secrets; nothing else holds the pool yet
        raise
    conversations = ConversationService(pool, WebhookEndpoints(settings.webhooks, box))
    app[CONVERSATIONS] = conversations
    yield
    await pool.close()


async def supervisor_ctx(app: web.Application) -> AsyncIterator[None]:
    supervisor = Supervisor()
    app[SUPERVISOR] = supervisor
    trim_interval = app[SETTINGS].performance.memory_trim_interval
    if trim_interval > 0:
        supervisor.start(TRIM_TASK, lambda: trim_loop(trim_interval), required=False)
    app[METRICS].watch(StateCollector(
        "chatserver_task_up", "1 while a supervised background task runs", ["task"],
        lambda: {(n, ): float(h.state is TaskState.RUNNING) for n, h in supervisor.health.items()},
    ))
    yield
    await supervisor.close()


def watch_pool(metrics: Metrics, pool: asyncpg.Pool) -> None:
    metrics.watch(StateCollector(
        "chatserver_db_pool_connections", "Database pool connections by state", ["state"],
        lambda: {("in_use",): pool.get_size() - pool.get_idle_size(),
                 ("idle",): pool.get_idle_size()},
    ))


async def webhook_api_ctx(app: web.Application) -> AsyncIterator[None]:
    """The webhook API's service, once the sender exists (after `webhooks_ctx`)."""
    settings = app[SETTINGS]
    app[WEBHOOKS] = WebhookService(app[DB_POOL], app[CONVERSATIONS], settings.webhooks,
                                   app[WEBHOOK_SENDER], app[SECRET_BOX])
    app[TEAM_ENDPOINTS] = TeamEndpointService(app[DB_POOL], settings.webhooks, app[WEBHOOKS],
                                              app[SECRET_BOX])
    yield


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=MIDDLEWARES,
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[SECRET_BOX] = SecretBox.from_settings(settings.security)
    app[METRICS] = Metrics()
    app[SHUTDOWN] = Shutdown(settings.server.shutdown_timeout)
    performance, limits = settings.performance, settings.limits
    app[KEY_CACHE] = KeyCache(performance.api_key_cache_ttl,
                              unknown_ttl=performance.unknown_key_cache_ttl,
                              unknown_size=performance.unknown_key_cache_size)
    app[RATE_LIMITER] = KeyedLimiter(
        settings.limits.requests_per_second_per_key, settings.limits.request_burst_per_key
    )
    app[AUTH_THROTTLE] = KeyedLimiter(limits.failed_auths_per_second_per_address,
                                      limits.failed_auth_burst_per_address)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(supervisor_ctx)
    app.cleanup_ctx.append(webhooks_ctx)
    app.cleanup_ctx.append(webhook_api_ctx)
    app.cleanup_ctx.append(realtime_ctx)
    app.on_shutdown.append(app[SHUTDOWN].on_shutdown)
    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(app[SHUTDOWN].on_cleanup)
    setup_routes(app)
    return app
