"""Wiring: the app's webhook cleanup context, the dispatcher's supervisor, `chatserver worker`.

Inside `chatserver serve` (`[webhooks] run_in_server = true`, the default) a supervised dispatcher
runs beside the HTTP server; `chatserver worker` runs the same supervised dispatcher alone.
Several of either share the work safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable

import asyncpg
from aiohttp import web

from chatserver.appkeys import (
    CONVERSATIONS,
    DB_POOL,
    METRICS,
    SETTINGS,
    SHUTDOWN,
    WEBHOOK_RESOLVER,
    WEBHOOKS,
)
from chatserver.config import Settings
from chatserver.metrics import Metrics
from chatserver.webhooks.dispatcher import Dispatcher
from chatserver.webhooks.sender import WebhookSender
from chatserver.webhooks.service import WebhookService

log = logging.getLogger("chatserver.webhooks")

RESTART_BACKOFF_MAX = 60.0


class Supervisor:
    """Runs a dispatcher and starts a fresh one, with capped backoff, whenever it crashes."""

    def __init__(self, make: Callable[[], Dispatcher]) -> None:
        self.make = make
        self.current: Dispatcher | None = None
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Supervisor:
        self._task = asyncio.create_task(self.run(), name="webhook-dispatcher")
        return self

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 1.0
        while True:
            self.current = self.make()
            started = loop.time()
            try:
                await self.current.main()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if loop.time() - started > RESTART_BACKOFF_MAX:
                    backoff = 1.0  # it ran well for a while: an old crash loop says nothing now
                log.exception("webhook dispatcher crashed; restarting in %.0f s", backoff)
            await self._close_current()
            self.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX)

    def stop_claiming(self) -> None:
        """On SIGTERM, before anything else: claim nothing more (sends in flight go on)."""
        if self.current is not None:
            self.current.stop_claiming()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming first, then give in-flight sends up to `grace` seconds and release
        every claim left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_current(grace)

    async def _close_current(self, grace: float | None = None) -> None:
        if self.current is not None:
            with contextlib.suppress(Exception):
                await self.current.close(grace)


def supervised(
    pool: asyncpg.Pool, settings: Settings, sender: WebhookSender, metrics: Metrics | None = None
) -> Supervisor:
    return Supervisor(lambda: Dispatcher(pool, settings.webhooks, sender, metrics=metrics)).start()


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the HTTP sender, the service, and (when configured) the dispatcher."""
    settings = app[SETTINGS]
    sender = WebhookSender(settings.webhooks, resolver=app.get(WEBHOOK_RESOLVER))
    await sender.start()
    pool = app[DB_POOL]
    app[WEBHOOKS] = WebhookService(pool, app[CONVERSATIONS], settings.webhooks, sender)
    supervisor = (supervised(pool, settings, sender, app[METRICS])
                  if settings.webhooks.run_in_server else None)
    shutdown = app[SHUTDOWN]
    if supervisor is not None:
        shutdown.subscribe(supervisor.stop_claiming)
    try:
        yield
    finally:
        if supervisor is not None:
            await supervisor.stop(grace=shutdown.work_left())
        await sender.close()


async def run_worker(settings: Settings, *, burst: bool = False) -> None:
    """`chatserver worker`: a supervised dispatcher until SIGINT/SIGTERM (or, burst, idle)."""
    # Imported here: chatserver.app imports this module for its cleanup context.
    from chatserver.app import resolve_dsn, run_migrations
    from chatserver.db.pool import create_pool

    dsn = await resolve_dsn(settings)
    await run_migrations(dsn)
    pool = await create_pool(dsn, settings.database)
    sender = WebhookSender(settings.webhooks)
    await sender.start()
    try:
        if burst:
            await Dispatcher(pool, settings.webhooks, sender, burst=True).main()
            return
        supervisor = supervised(pool, settings, sender)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("webhook worker running")
        await stop.wait()
        log.info("webhook worker stopping")
        await supervisor.stop(grace=settings.server.shutdown_timeout)
    finally:
        await sender.close()
        await pool.close()
