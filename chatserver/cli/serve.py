"""One server process: the app, the first API key on a fresh database, and aiohttp's runner on
the chosen event loop (`chatserver serve`, and each child of `serve --workers N`)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from chatserver.app import create_app
from chatserver.appkeys import DB_POOL, SETTINGS, SHUTDOWN
from chatserver.auth.keys import create_api_key
from chatserver.config import Settings
from chatserver.server.eventloop import new_event_loop
from chatserver.server.gcpolicy import freeze_startup_objects
from chatserver.server.logs import AccessLogger, setup_logging
from chatserver.server.shutdown import handler_timeout
from chatserver.store import api_keys

BOOTSTRAP_LOCK_ID = 7_295_002


async def bootstrap_key(app: web.Application) -> None:
    async with app[DB_POOL].acquire() as conn:
        await create_first_key(conn, app[SETTINGS].server.port)


async def create_first_key(conn: asyncpg.Connection, port: int) -> None:
    """On first start, with no active key, create one and print it once with a curl line."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", BOOTSTRAP_LOCK_ID)
        if await api_keys.count_active_keys(conn):
            return
        key, _row = await create_api_key(conn, "default", None)
    print(
        f"\nCreated the first API key (admin; shown only now, store it):\n\n    {key}\n\n"
        "Try it:\n\n"
        f"    curl http://localhost:{port}/api/conversations \\\n"
        f"      -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
        """      --data-raw '{"channel":"API","usecase":"DEFAULT"}'\n""",
        flush=True,
    )


def run_serve(settings: Settings, *, reuse_port: bool = False, bootstrap: bool = True) -> None:
    setup_logging(settings.server.log_level, settings.server.log_format)
    app = create_app(settings)
    if bootstrap:
        app.on_startup.append(bootstrap_key)
    app.on_startup.append(freeze_startup_objects)
    app[SHUTDOWN].enforce = True  # a real process: exit by the deadline, whatever hangs
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        shutdown_timeout=handler_timeout(settings.server.shutdown_timeout),
        access_log_class=AccessLogger,
        reuse_port=reuse_port,
        print=lambda text: print(text, flush=True),
        loop=new_event_loop(settings.performance.uvloop),
    )
