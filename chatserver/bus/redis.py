"""The Redis bus: PUBLISH to one channel per conversation, one SUBSCRIBE per followed topic.

One pub/sub connection per instance carries every followed topic, so Redis sees one subscription
per instance per active conversation, never one per socket. The listener is the app Supervisor's
"redis-bus-listener" task (not required for readiness: without Redis an instance still serves). One
run of `listen` is one watched session: it raises when the session dies, and also when it stalls
(it pings through the pub/sub connection and expects to hear something back within
`stall_timeout`), and the Supervisor starts the next after a backoff from BACKOFF_START doubling to
`backoff_max`. After each reconnect the handler's `on_reconnect` runs, so the hub can fill from
Postgres whatever was published while we were away.

Publishes made in one event-loop iteration (e.g. the messages of one group commit) go to Redis as
one pipeline: one round trip for all of them, in the order they were made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from chatserver.bus.base import BusHandler, BusState
from chatserver.bus.batch import Outgoing, PublishBatch
from chatserver.bus.watchdog import watch
from chatserver.server.supervisor import Supervisor

log = logging.getLogger(__name__)

PREFIX = "chatserver:bus:"
# Always subscribed, so the pub/sub connection exists (and can be pinged) with no active room.
CONTROL_CHANNEL = PREFIX + "_control"
LISTENER_TASK = "redis-bus-listener"
BACKOFF_START = 0.05
READ_TIMEOUT = 1.0
CONNECT_TIMEOUT = 2.0


def make_client(url: str) -> Redis:
    """A client that fails fast: no retries, short timeouts (the hub copes with a missing bus).

    RESP2: a pub/sub message is then a plain reply, not a RESP3 push through redis-py's push
    handlers (a fifth less client CPU for Redis in the websocket write benchmark)."""
    return Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0), protocol=2,
    )


class RedisBus:
    def __init__(
        self, url: str | None = None, *, client: Redis | None = None,
        backoff_max: float = 5.0, stall_timeout: float = 15.0,
    ) -> None:
        if client is None:
            if not url:
                raise ValueError("RedisBus needs a url or a client")
            client = make_client(url)
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        self.backoff_max = backoff_max
        self.stall_timeout = stall_timeout
        self._handler: BusHandler | None = None
        self._topics: set[str] = set()
        self._pubsub: PubSub | None = None
        self._state = BusState.CONNECTING
        self._ever_connected = False
        self._alive_at = 0.0
        self._supervisor: Supervisor | None = None
        self._sync_lock = asyncio.Lock()
        self._batch = PublishBatch(self._send)

    @property
    def state(self) -> BusState:
        return self._state

    def node_states(self) -> dict[str, BusState]:
        return {}

    def _set_state(self, state: BusState) -> None:
        if state is not self._state:
            log.info("redis bus %s", state)
        self._state = state

    async def connect(self, handler: BusHandler, supervisor: Supervisor) -> None:
        self._handler = handler
        self._supervisor = supervisor
        supervisor.start(LISTENER_TASK, self.listen, initial_backoff=BACKOFF_START,
                         max_backoff=self.backoff_max, required=False)

    async def close(self) -> None:
        if self._supervisor is not None:
            await self._supervisor.stop(LISTENER_TASK)
        self._handler = None
        if self._owns_client:
            await self.client.aclose()

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._batch.publish(topic, payload)

    async def _send(self, outgoing: Outgoing) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for topic, payload in outgoing:
                pipe.publish(PREFIX + topic, payload)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            # Other instances fill the gap from Postgres (on the next message or reconciliation).
            log.debug("publishing %d payloads failed: %r", len(outgoing), exc)

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        await self._sync(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        await self._sync(topic)

    async def _sync(self, topic: str) -> None:
        """Make the live connection follow `topic` or not, as `_topics` says at this moment.

        Commands go one at a time and read the wanted state when they run, so an unsubscribe and a
        subscribe racing for one topic always end in the state asked for last. While the
        connection is down there is nothing to do: the next session subscribes to all topics.
        """
        async with self._sync_lock:
            pubsub = self._pubsub
            if pubsub is None:
                return
            channel = PREFIX + topic
            try:
                if topic in self._topics:
                    await pubsub.subscribe(channel)
                else:
                    await pubsub.unsubscribe(channel)
            except (RedisError, OSError) as exc:
                log.debug("pub/sub command failed, the listener will reconnect: %r", exc)

    async def listen(self) -> None:
        """One listener session, watched: raises when it ends or stalls (the bus is down then)."""
        session = asyncio.create_task(self._session(), name="redis-bus-session")
        self._alive_at = asyncio.get_running_loop().time()
        try:
            await watch(session, lambda: self._alive_at, self.stall_timeout, "redis bus")
        finally:
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)
            self._set_state(BusState.DOWN)

    async def _session(self) -> None:
        pubsub = self.client.pubsub()
        try:
            # Under the lock, so a topic followed meanwhile is either in this list or sent after.
            async with self._sync_lock:
                await pubsub.subscribe(CONTROL_CHANNEL, *(PREFIX + t for t in self._topics))
                self._pubsub = pubsub
            await self._read(pubsub)
        finally:
            self._pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        ping_every = self.stall_timeout / 3
        pinged_at = loop.time()
        while True:
            message = await pubsub.get_message(timeout=READ_TIMEOUT)
            now = loop.time()
            if message is not None:
                self._alive_at = now
                self._on_message(message)
            if now - pinged_at >= ping_every:
                pinged_at = now
                await pubsub.ping()

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "subscribe" and message["channel"] == CONTROL_CHANNEL.encode():
            self._on_connected()
        elif kind == "message" and self._handler is not None:
            topic = message["channel"].decode()[len(PREFIX):]
            self._handler.on_payload(topic, message["data"])

    def _on_connected(self) -> None:
        self._set_state(BusState.OK)
        if self._ever_connected and self._handler is not None:
            self._handler.on_reconnect()
        self._ever_connected = True
