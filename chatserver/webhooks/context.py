"""Wiring: the app's webhook cleanup context, the supervised dispatcher, `chatserver worker`.

Inside `chatserver serve` (`[webhooks] run_in_server = true`, the default) the dispatcher runs
beside the HTTP server as the app Supervisor's "webhook-dispatcher" task (restarted with backoff
when it crashes; its health in /readyz and `chatserver_task_up`); `chatserver worker` runs the
same task under a Supervisor of its own. Several of either share the work safely.
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
from chatserver.db.bootstrap import resolve_dsn, run_migrations
from chatserver.db.pool import create_pool
from chatserver.metrics import Metrics
from chatserver.server.supervisor import Supervisor
from chatserver.webhooks.dispatcher import Dispatcher
from chatserver.webhooks.sender import WebhookSender
from chatserver.webhooks.service import WebhookService

log = logging.getLogger("chatserver.webhooks")

DISPATCHER_TASK = "webhook-dispatcher"
RESTART_BACKOFF_START = 1.0
RESTART_BACKOFF_MAX = 60.0


class DispatcherRunner:
    """The body of the supervised "webhook-dispatcher" task: a fresh Dispatcher per (re)start.

    A Supervisor runs `run` and restarts it with capped backoff when the dispatcher crashes; the
    crashed one is closed (its claims released) before the backoff. After `stop_claiming`
    (SIGTERM) the dispatcher's `main` returns, and so does `run`: a task that returns is done, so
    nothing claims again.
    """

    def __init__(self, make: Callable[[], Dispatcher]) -> None:
        self.make = make
        self.current: Dispatcher | None = None
        self.stopping = False
        self.supervisor: Supervisor | None = None

    def start(self, supervisor: Supervisor) -> DispatcherRunner:
        self.supervisor = supervisor
        supervisor.start(DISPATCHER_TASK, self.run, initial_backoff=RESTART_BACKOFF_START,
                         max_backoff=RESTART_BACKOFF_MAX)
        return self

    async def run(self) -> None:
        if self.stopping:
            return
        dispatcher = self.current = self.make()
        try:
            await dispatcher.main()
        except Exception:
            # Its claims go back now, not after the backoff, so another dispatcher sends them.
            with contextlib.suppress(Exception):
                await dispatcher.close()
            raise

    def stop_claiming(self) -> None:
        """On SIGTERM, before anything else: claim nothing more (sends in flight go on)."""
        self.stopping = True
        if self.current is not None:
            self.current.stop_claiming()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming first, then give in-flight sends up to `grace` seconds and release
        every claim left."""
        self.stop_claiming()
        if self.supervisor is not None:
            await self.supervisor.stop(DISPATCHER_TASK)
        if self.current is not None:
            with contextlib.suppress(Exception):
                await self.current.close(grace)


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
    shutdown = app[SHUTDOWN]
    runner = None
    if settings.webhooks.run_in_server:
        runner = dispatcher_runner(pool, settings, sender, app[METRICS]).start(app[SUPERVISOR])
        shutdown.subscribe(runner.stop_claiming)
    try:
        yield
    finally:
        if runner is not None:
            await runner.stop(grace=shutdown.work_left())
        await sender.close()


async def run_worker(settings: Settings, *, burst: bool = False) -> None:
    """`chatserver worker`: a supervised dispatcher until SIGINT/SIGTERM (or, burst, idle)."""
    dsn = await resolve_dsn(settings)
    await run_migrations(dsn, partitions=settings.database.partitions)
    pool = await create_pool(dsn, settings.database)
    sender = WebhookSender(settings.webhooks)
    await sender.start()
    try:
        if burst:
            await Dispatcher(pool, settings.webhooks, sender, burst=True).main()
            return
        runner = dispatcher_runner(pool, settings, sender).start(Supervisor())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("webhook worker running")
        await stop.wait()
        log.info("webhook worker stopping")
        await runner.stop(grace=settings.server.shutdown_timeout)
    finally:
        await sender.close()
        await pool.close()
