"""Wiring of the real-time parts of an instance, made and closed together: the bus, the hub (with
its delivery meter), presence, the token signer, the message, participant and stream services that
tell the hub of each commit (with the supervised idle-stream sweep), and the socket registry with
its supervised credential re-check.

Hot paths pay one metrics call per message per instance (never per socket or per frame).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
from aiohttp import WSCloseCode, web

from chatserver.appkeys import (
    ACTIONS,
    CONVERSATIONS,
    DB_POOL,
    HUB,
    MESSAGES,
    METRICS,
    PARTICIPANTS,
    PRESENCE,
    RUNS,
    SECRET_BOX,
    SETTINGS,
    SOCKETS,
    STREAMS,
    SUPERVISOR,
    TOKENS,
)
from chatserver.auth.tokens import TokenSigner, load_secret
from chatserver.bus import Bus, BusState, create_bus
from chatserver.bus.cluster import ClusterBus
from chatserver.bus.redis import LISTENER_TASK, RedisBus
from chatserver.db.errors import TRANSIENT_ERRORS
from chatserver.metrics import CountCollector, Metrics, StateCollector
from chatserver.realtime.guard import SocketRegistry
from chatserver.realtime.hub import Hub
from chatserver.realtime.presence import MemoryPresence, Presence, RedisPresence
from chatserver.server.supervisor import Supervisor
from chatserver.services.actions import ActionService
from chatserver.services.messages import MessageService
from chatserver.services.participants import ParticipantService
from chatserver.services.runs import RunService
from chatserver.services.streamcommit import StreamCommitter
from chatserver.services.streams import IDLE_SWEEP_TASK, StreamService

log = logging.getLogger(__name__)

CREATED_AT = b'"created_at":"'
RECHECK_WITHOUT_HEARTBEAT = 30.0  # credential re-check interval when heartbeat = 0 (off)
RECHECK_TASK = "socket-credentials"
STALE_RUNS_TASK = "run-stale-sweep"


async def realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, metrics, supervisor = app[SETTINGS], app[METRICS], app[SUPERVISOR]
    options = settings.realtime
    pool = app[DB_POOL]
    bus = create_bus(settings.redis.url, backoff_max=options.bus_backoff_max,
                     stall_timeout=options.listener_stall_timeout, cluster=settings.redis.cluster,
                     refresh_interval=settings.redis.cluster_refresh_interval)
    presence: Presence = (
        RedisPresence(bus.client, options.presence_ttl) if isinstance(bus, RedisBus | ClusterBus)
        else MemoryPresence()
    )
    app[TOKENS] = TokenSigner(await load_secret(pool, options.token_secret, app[SECRET_BOX]))
    hub = Hub(pool, bus, options, supervisor, on_message=DeliveryMeter(metrics),
              flush_interval=settings.performance.fanout_flush_interval,
              on_deltas=lambda deltas, sockets: metrics.deltas_out.inc(deltas * sockets))
    app[HUB] = hub
    app[PRESENCE] = presence
    app[PARTICIPANTS] = ParticipantService(pool, app[CONVERSATIONS], hub)
    runs = app[RUNS] = RunService(pool, settings.runs, hub)
    app[ACTIONS] = ActionService(pool, hub)
    app[MESSAGES] = MessageService(pool, app[CONVERSATIONS], settings.messages, hub,
                                   settings.performance, runs=runs)
    app[STREAMS] = StreamService(
        pool, app[MESSAGES].teams, settings.streams, hub,
        StreamCommitter(pool, settings.streams.commit_interval,
                        on_commit=lambda streams, deltas: count_commit(metrics, deltas)))
    registry = SocketRegistry(settings.limits, metrics)
    app[SOCKETS] = registry
    await hub.start()
    await presence.start(supervisor)
    interval = options.heartbeat or RECHECK_WITHOUT_HEARTBEAT
    supervisor.start(RECHECK_TASK, lambda: recheck_loop(registry, pool, interval))
    supervisor.start(STALE_RUNS_TASK, runs.sweep_loop)
    watch_bus(metrics, bus, supervisor)
    supervisor.start(IDLE_SWEEP_TASK, app[STREAMS].sweep_loop)
    yield
    await supervisor.stop(IDLE_SWEEP_TASK)
    await app[STREAMS].close()
    await supervisor.stop(RECHECK_TASK)
    await supervisor.stop(STALE_RUNS_TASK)
    await presence.close()
    await hub.close()


async def close_sockets(app: web.Application) -> None:
    """On shutdown: every websocket is closed with 1001 (going away), so clients reconnect."""
    if HUB in app:
        await app[HUB].shut_all(WSCloseCode.GOING_AWAY, "server shutting down")


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


def count_commit(metrics: Metrics, deltas: int) -> None:
    metrics.stream_commits.inc()
    metrics.deltas_in.inc(deltas)


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


async def recheck_loop(registry: SocketRegistry, pool: asyncpg.Pool, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await registry.recheck(pool)
        except TRANSIENT_ERRORS as exc:
            log.warning("re-checking socket credentials failed (next try in %.0fs): %r",
                        interval, exc)
