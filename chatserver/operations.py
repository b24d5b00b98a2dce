"""Operational wiring of an instance: the socket registry with its credential re-check, and the
metrics read from other parts (deliveries and fan-out latency from the hub, bus state, webhook
queue depth).

Hot paths pay one call per message per instance (never per socket or per frame); state that needs
a query (the webhook queue depth) is read at scrape time and cached for a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
from aiohttp import web

from chatserver.appkeys import DB_POOL, HUB, METRICS, SETTINGS, SOCKETS, SUPERVISOR
from chatserver.bus import Bus, BusState
from chatserver.bus.redis import LISTENER_TASK
from chatserver.metrics import CountCollector, Metrics, StateCollector
from chatserver.realtime.guard import SocketRegistry
from chatserver.server.supervisor import Supervisor
from chatserver.store import webhooks as webhook_store

log = logging.getLogger("chatserver.operations")

QUEUE_DEPTH_CACHE = 5.0  # seconds a webhook queue count is reused by scrapes
CREATED_AT = b'"created_at":"'
RECHECK_WITHOUT_HEARTBEAT = 30.0  # credential re-check interval when heartbeat = 0 (off)
RECHECK_TASK = "socket-credentials"


class DeliveryMeter:
    """Counts message frames handed to local sockets and observes commit-to-delivery latency.

    Called by the hub once per message per instance. The commit time is the message's created_at,
    found from the end of the frame (the message's own `created_at` is its next-to-last field, so
    a `created_at` inside metadata never matches), without parsing the JSON.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.out = metrics.messages_out
        self.latency = metrics.fanout_latency

    def __call__(self, frame: bytes, sockets: int) -> None:
        if sockets:
            self.out.inc(sockets)
        start = frame.rfind(CREATED_AT)
        if start < 0:
            return
        start += len(CREATED_AT)
        end = frame.find(b'"', start)
        try:
            committed = datetime.fromisoformat(frame[start:end].decode()).timestamp()
        except ValueError:
            return
        self.latency.observe(max(0.0, time.time() - committed))


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
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("counting pending webhook deliveries failed: %r", exc)


def watch_bus(metrics: Metrics, bus: Bus, supervisor: Supervisor) -> None:
    metrics.watch(StateCollector(
        "chatserver_bus_up", "1 while the bus is connected, else 0", [],
        lambda: {(): float(bus.state is BusState.OK)},
    ))
    metrics.watch(CountCollector(
        "chatserver_bus_reconnects", "Reconnections of the bus listener", [],
        lambda: {(): float(sum(h.restarts for name, h in supervisor.health.items()
                               if name.partition(":")[0] == LISTENER_TASK))},
    ))
    metrics.watch(StateCollector(
        "chatserver_bus_node_up", "1 while a Redis Cluster primary's listener is connected",
        ["node"],
        lambda: {(node,): float(state is BusState.OK) for node, state in bus.node_states().items()},
    ))


def watch_webhook_queue(metrics: Metrics, pool: asyncpg.Pool) -> None:
    depth = QueueDepth(pool)
    metrics.before_scrape(depth.refresh)
    metrics.watch(StateCollector(
        "chatserver_webhook_queue_depth", "Pending webhook deliveries (all instances)", [],
        lambda: {(): depth.value},
    ))


async def recheck_loop(registry: SocketRegistry, pool: asyncpg.Pool, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await registry.recheck(pool)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("re-checking socket credentials failed (next try in %.0fs): %r",
                        interval, exc)


async def operations_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context (after the real-time one): sockets registry, re-check task, metrics."""
    settings, metrics, pool = app[SETTINGS], app[METRICS], app[DB_POOL]
    registry = SocketRegistry(settings.limits, metrics)
    app[SOCKETS] = registry
    interval = settings.realtime.heartbeat or RECHECK_WITHOUT_HEARTBEAT
    app[SUPERVISOR].start(RECHECK_TASK, lambda: recheck_loop(registry, pool, interval))
    hub = app[HUB]
    hub.on_message = DeliveryMeter(metrics)
    watch_bus(metrics, hub.bus, app[SUPERVISOR])
    watch_webhook_queue(metrics, pool)
    yield
    hub.on_message = None
