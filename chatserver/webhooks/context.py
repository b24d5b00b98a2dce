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
    SUPERVISOR,
    WEBHOOK_RESOLVER,
    WEBHOOKS,
)
from chatserver.config import Settings
from chatserver.metrics import Metrics
from chatserver.supervisor import Supervisor
from chatserver.webhooks.dispatcher import Dispatcher
from chatserver.webhooks.sender import WebhookSender
from chatserver.webhooks.service import WebhookService

log = logging.getLogger("chatserver.webhooks")

DISPATCHER_TASK = "webhook-dispatcher"


class DispatcherRunner:
    """One supervised task's dispatcher: a fresh one per (re)start, reachable for shutdown.

    The app's Supervisor runs `run_once` and restarts it with capped backoff when it crashes, so
    the dispatcher's health shows in /readyz and the `chatserver_task_up` metric like every task.
    """

    def __init__(self, make: Callable[[], Dispatcher]) -> None:
        self.make = make
        self.current: Dispatcher | None = None

    async def run_once(self) -> None:
        await self.close()  # a crashed predecessor releases its claims first
        self.current = self.make()
        await self.current.main()

    def stop_claiming(self) -> None:
        """On SIGTERM, before anything else: claim nothing more (sends in flight go on)."""
        if self.current is not None:
            self.current.stop_claiming()

    async def close(self, grace: float | None = None) -> None:
        """Give in-flight sends up to `grace` seconds, then release every claim left."""
        if self.current is not None:
            with contextlib.suppress(Exception):
                await self.current.close(grace)
            self.current = None


def dispatcher_runner(
    pool: asyncpg.Pool, settings: Settings, sender: WebhookSender, metrics: Metrics | None = None
) -> DispatcherRunner:
    return DispatcherRunner(lambda: Dispatcher(pool, settings.webhooks, sender, metrics=metrics))


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the HTTP sender, the service, and (when configured) the dispatcher."""
    settings = app[SETTINGS]
    sender = WebhookSender(settings.webhooks, resolver=app.get(WEBHOOK_RESOLVER))
    await sender.start()
    pool = app[DB_POOL]
    app[WEBHOOKS] = WebhookService(pool, app[CONVERSATIONS], settings.webhooks, sender)
    runner = None
    shutdown = app[SHUTDOWN]
    if settings.webhooks.run_in_server:
        runner = dispatcher_runner(pool, settings, sender, app[METRICS])
        app[SUPERVISOR].start(DISPATCHER_TASK, runner.run_once)
        shutdown.subscribe(runner.stop_claiming)
    try:
        yield
    finally:
        if runner is not None:
            await app[SUPERVISOR].stop(DISPATCHER_TASK)
            await runner.close(grace=shutdown.work_left())
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
        runner = dispatcher_runner(pool, settings, sender)
        supervisor = Supervisor()
        supervisor.start(DISPATCHER_TASK, runner.run_once)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("webhook worker running")
        await stop.wait()
        log.info("webhook worker stopping")
        await supervisor.close()
        await runner.close(grace=settings.server.shutdown_timeout)
    finally:
        await sender.close()
        await pool.close()
