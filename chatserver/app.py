"""The application factory: settings in, a wired aiohttp Application out.

Every pool and client is created and closed by a cleanup context, in dependency order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from chatserver.api.middleware import auth_middleware
from chatserver.api.routes import setup_routes
from chatserver.appkeys import CONVERSATIONS, DB_POOL, MESSAGES, SETTINGS
from chatserver.config import Settings
from chatserver.conversations import ConversationService
from chatserver.db.embedded import start_embedded
from chatserver.db.migrate import migrate
from chatserver.db.pool import create_pool
from chatserver.messages import MessageService
from chatserver.problems import problem_middleware
from chatserver.realtime import close_sockets, realtime_ctx

log = logging.getLogger("chatserver.app")


async def resolve_dsn(settings: Settings) -> str:
    """The configured database URL, or the embedded server's (started if needed)."""
    if settings.database.url:
        return settings.database.url
    loop = asyncio.get_running_loop()
    _server, dsn = await loop.run_in_executor(None, start_embedded, settings.database.data_dir)
    return dsn


async def run_migrations(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    dsn = await resolve_dsn(settings)
    await run_migrations(dsn)
    pool = await create_pool(dsn, settings.database)
    app[DB_POOL] = pool
    conversations = ConversationService(pool)
    app[CONVERSATIONS] = conversations
    app[MESSAGES] = MessageService(pool, conversations, settings.messages)
    yield
    await pool.close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[problem_middleware, auth_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(realtime_ctx)
    app.on_shutdown.append(close_sockets)
    setup_routes(app)
    return app
