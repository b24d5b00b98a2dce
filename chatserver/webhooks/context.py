"""Wiring: the app's webhook cleanup context (with the queue-depth gauge), the supervised
dispatcher, and `chatserver worker` (the dispatcher in a process of its own).

The queue depth needs a query, so it is read at scrape time and cached for a few seconds.

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
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
from aiohttp import web

from chatserver.appkeys import (
    DB_POOL,
    METRICS,
    SETTINGS,
    SHUTDOWN,
    SUPERVISOR,
    WEBHOOK_RESOLVER,
    WEBHOOK_SENDER,
)
from chatserver.config import Settings
from chatserver.db.bootstrap import resolve_dsn, run_migrations
from chatserver.db.errors import TRANSIENT_ERRORS
from chatserver.db.pool import create_pool
from chatserver.metrics import Metrics, StateCollector
from chatserver.security.box import SecretBox
from chatserver.server.supervisor import Supervisor
from chatserver.store import webhooks as webhook_store
from chatserver.webhooks.dispatcher import Dispatcher
from chatserver.webhooks.sender import WebhookSender

log = logging.getLogger(__name__)

QUEUE_DEPTH_CACHE = 5.0  # seconds a webhook queue count is reused by scrapes
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
    box = SecretBox.from_settings(settings.security)
    return DispatcherRunner(
        lambda: Dispatcher(pool, settings.webhooks, sender, metrics=metrics, box=box))


class QueueDepth:
    """Pending webhook deliveries, counted at most every QUEUE_DEPTH_CACHE seconds."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.value = 0.0
        self.read_at = float("-inf")

    async def refresh(self) -> None:
        now = time.monotonic()
        if now - self.read_at < QUEUE_DEPTH_CACHE:
            return
        self.read_at = now
        try:
            async with asyncio.timeout(QUEUE_DEPTH_CACHE):
                async with self.pool.acquire() as conn:
                    self.value = float(await webhook_store.count_all_pending(conn))
        except TRANSIENT_ERRORS as exc:
            log.warning("counting pending webhook deliveries failed: %r", exc)


def watch_webhook_queue(metrics: Metrics, pool: asyncpg.Pool) -> None:
    depth = QueueDepth(pool)
    metrics.before_scrape(depth.refresh)
    metrics.watch(StateCollector(
        "chatserver_webhook_queue_depth", "Pending webhook deliveries (all instances)", [],
        lambda: {(): depth.value},
    ))


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the HTTP sender (also for the API's test sends and redeliveries), the
    queue-depth gauge and (when configured) the dispatcher."""
    settings = app[SETTINGS]
    sender = WebhookSender(settings.webhooks, resolver=app.get(WEBHOOK_RESOLVER))
    await sender.start()
    pool = app[DB_POOL]
    app[WEBHOOK_SENDER] = sender
    watch_webhook_queue(app[METRICS], pool)
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


async def run_dispatcher(settings: Settings, *, burst: bool = False) -> None:
    """`chatserver worker`: a supervised dispatcher in a process of its own, until SIGINT/SIGTERM
    (or, with `burst`, until nothing is due)."""
    dsn = await resolve_dsn(settings)
    await run_migrations(dsn, partitions=settings.database.partitions)
    pool = await create_pool(dsn, settings.database)
    sender = WebhookSender(settings.webhooks)
    await sender.start()
    try:
        if burst:
            box = SecretBox.from_settings(settings.security)
            await Dispatcher(pool, settings.webhooks, sender, burst=True, box=box).main()
            return
        runner = dispatcher_runner(pool, settings, sender).start(Supervisor())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("webhook dispatcher running")
        await stop.wait()
        log.info("webhook dispatcher stopping")
        await runner.stop(grace=settings.server.shutdown_timeout)
    finally:
        await sender.close()
        await pool.close()
