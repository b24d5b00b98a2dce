"""One primary of a Redis Cluster as the cluster bus uses it: SPUBLISH through a small client, and
one subscription connection carrying every shard channel this instance follows on that primary.

Why not redis-py's `ClusterPubSub`: its `get_sharded_message` polls the nodes' connections one
after another, each with the read timeout (about 2 s of latency with 3 primaries), and in the
released versions `listen()` does not deliver sharded messages; both were fixed upstream after
8.1 (https://github.com/redis/redis-py/pull/4076). So each primary gets its own reader here, on a
plain redis-py `Connection`, and the rest (parsing, SPUBLISH pipelines) stays redis-py's.

A session of the connection: connect, SSUBSCRIBE every wanted channel and PING `ready` in one
write, then read until the connection dies; a second task pings every `stall_timeout / 3` and
`watch` ends the session when nothing was heard for `stall_timeout`. The Supervisor starts the next
session after a backoff. Subscription changes made in one event-loop iteration go as one write.

When the cluster takes a channel away (a MOVED reply to SSUBSCRIBE, or an SUNSUBSCRIBE we did not
ask for: its slot moved or the node became a replica), the shard forgets it and tells the bus,
which re-reads the slots and hands the channel to its new owner; once it is subscribed there, a
PING `fill` comes back and the bus asks the hub to fill from Postgres what was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from chatserver.bus.base import BusState
from chatserver.bus.batch import Outgoing
from chatserver.bus.slots import Address, address_name, slot
from chatserver.bus.watchdog import watch

log = logging.getLogger("chatserver.bus.shard")

PREFIX = "chatserver:bus:"
CONNECT_TIMEOUT = 2.0
READY, FILL, ALIVE = b"ready", b"fill", b"alive"  # PING arguments, echoed in the pong


def channel(topic: str) -> str:
    """The shard channel of a topic; the hash tag puts it in the slot of the topic's Redis keys."""
    return f"{PREFIX}{{{topic}}}"


def topic_of(name: bytes) -> str:
    return name.decode()[len(PREFIX) + 1:-1]


class ShardEvents(Protocol):
    """What a shard tells the cluster bus."""

    def on_payload(self, topic: str, payload: bytes) -> None: ...

    def on_lost(self, shard: Shard) -> None:
        """The cluster took channels away from this shard: re-read the slots."""

    def on_fill(self) -> None:
        """Channels (re)subscribed after a gap: the hub should fill from Postgres."""


def fast_client(address: Address) -> Redis:
    return Redis(host=address[0], port=address[1], socket_connect_timeout=CONNECT_TIMEOUT,
                 socket_timeout=CONNECT_TIMEOUT, retry=Retry(NoBackoff(), 0), protocol=2)


class Shard:
    def __init__(self, address: Address, events: ShardEvents, *, stall_timeout: float) -> None:
        self.address = address
        self.name = address_name(address)
        self.events = events
        self.stall_timeout = stall_timeout
        self.client = fast_client(address)
        self.state = BusState.CONNECTING
        self.wanted: set[str] = set()  # topics this instance follows whose slot this primary owns
        self.fill_due = False  # set when topics moved here: fill their rooms once subscribed
        self._subscribed: set[str] = set()  # sent on the live connection
        self._unsubscribing: set[str] = set()
        self._conn: Connection | None = None
        self._ever_ready = False
        self._alive_at = 0.0

    async def close(self) -> None:
        await self.client.aclose()

    # --- publishing ------------------------------------------------------------------------------

    async def publish(self, outgoing: Outgoing) -> bool:
        """SPUBLISH in one pipeline; False when a reply says this node no longer owns a slot."""
        pipe = self.client.pipeline(transaction=False)
        for topic, payload in outgoing:
            pipe.execute_command("SPUBLISH", channel(topic), payload)
        replies = await pipe.execute(raise_on_error=False)
        return not any(isinstance(reply, ResponseError) for reply in replies)

    # --- following channels ----------------------------------------------------------------------

    async def sync(self) -> None:
        """Make the live connection follow `wanted`; one iteration's changes go as one write."""
        await asyncio.sleep(0)
        conn = self._conn
        if conn is None:
            return  # the next session subscribes to everything wanted
        commands = self._changes()
        if not commands:
            return
        try:
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        except (RedisError, OSError) as exc:
            log.debug("shard %s: subscription change failed, reconnecting: %r", self.name, exc)

    def _changes(self) -> list[tuple[Any, ...]]:
        add, remove = self.wanted - self._subscribed, self._subscribed - self.wanted
        commands: list[tuple[Any, ...]] = [("SSUBSCRIBE", channel(t)) for t in add]
        commands += [("SUNSUBSCRIBE", channel(t)) for t in remove]
        if add and self.fill_due:
            self.fill_due = False
            commands.append(("PING", FILL))
        self._subscribed = (self._subscribed | add) - remove
        self._unsubscribing |= remove
        return commands

    # --- the subscription connection -------------------------------------------------------------

    async def listen(self) -> None:
        """One session, watched: raises when it ends or stalls (this primary is down then)."""
        session = asyncio.create_task(self._session(), name=f"redis-bus-shard-{self.name}")
        self._alive_at = asyncio.get_running_loop().time()
        try:
            await watch(session, lambda: self._alive_at, self.stall_timeout, f"shard {self.name}")
        finally:
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)
            self.state = BusState.DOWN

    async def _session(self) -> None:
        conn = Connection(host=self.address[0], port=self.address[1], protocol=2,
                          socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT,
                          retry=Retry(NoBackoff(), 0))
        try:
            await conn.connect()
            self._subscribed = set(self.wanted)
            commands: list[tuple[Any, ...]] = [("SSUBSCRIBE", channel(t)) for t in self.wanted]
            await conn.send_packed_command(conn.pack_commands([*commands, ("PING", READY)]))
            self._conn = conn
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read(conn))
                group.create_task(self._ping(conn))
        finally:
            self._conn = None
            self._subscribed.clear()
            self._unsubscribing.clear()
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def _ping(self, conn: Connection) -> None:
        while True:
            await asyncio.sleep(self.stall_timeout / 3)
            await conn.send_command("PING", ALIVE, check_health=False)

    async def _read(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                reply = await conn.read_response(timeout=math.inf)
            except ResponseError as exc:
                self._alive_at = loop.time()
                self._refused(str(exc))
                continue
            self._alive_at = loop.time()
            if isinstance(reply, bytes):  # PING <arg> with no channel followed echoes <arg>
                reply = [b"pong", reply]
            self._on_reply(reply)

    def _on_reply(self, reply: list[bytes]) -> None:
        kind = reply[0]
        if kind == b"smessage":
            self.events.on_payload(topic_of(reply[1]), reply[2])
        elif kind == b"sunsubscribe":
            self._unsubscribed(topic_of(reply[1]))
        elif kind == b"pong" and reply[1] == READY:
            fill = self._ever_ready or self.fill_due
            self.state, self._ever_ready, self.fill_due = BusState.OK, True, False
            log.info("shard %s ok, following %d channels", self.name, len(self._subscribed))
            if fill:
                self.events.on_fill()
        elif kind == b"pong" and reply[1] == FILL:
            self.events.on_fill()

    def _unsubscribed(self, topic: str) -> None:
        if topic in self._unsubscribing:
            self._unsubscribing.discard(topic)
            return
        # Not asked for: the cluster moved this channel's slot elsewhere.
        log.info("shard %s dropped %s; re-reading the slots", self.name, topic)
        self._subscribed.discard(topic)
        self.fill_due = True
        self.events.on_lost(self)

    def _refused(self, error: str) -> None:
        """An error reply: to an SSUBSCRIBE whose slot (`MOVED <slot> <address>`) is not ours."""
        words = error.split()
        if words and words[0] in ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN"):
            if words[0] in ("MOVED", "ASK") and len(words) > 1 and words[1].isdigit():
                moved = int(words[1])
                self._subscribed -= {t for t in self._subscribed if slot(channel(t)) == moved}
            else:
                self._subscribed.clear()
            self.fill_due = True
            self.events.on_lost(self)
        else:
            log.warning("shard %s: %s", self.name, error)
