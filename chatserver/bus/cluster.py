"""The Redis Cluster bus: one sharded channel per conversation (SSUBSCRIBE / SPUBLISH), so a
conversation's traffic touches only the primary that owns its slot, and adding primaries adds
capacity (classic PUBLISH in a cluster reaches every node).

`[redis] url` names any node; the supervised task "redis-bus-topology" reads the slot map
(`slots.read_topology`) at start, every `cluster_refresh_interval` seconds, at once when a shard
reports a moved channel or a publish is refused, and every FAST_REFRESH seconds while a primary is
down (until its replica is promoted). Each primary is a `Shard` with its own supervised listener
("redis-bus-listener:<host:port>"). A change of owner moves the affected topics to their new
shard, which subscribes them and then asks the hub to fill from Postgres (`on_reconnect`), so
every socket still gets every message once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from chatserver.bus.base import BusHandler, BusState
from chatserver.bus.batch import Outgoing, PublishBatch
from chatserver.bus.redis import BACKOFF_START, CONNECT_TIMEOUT, LISTENER_TASK
from chatserver.bus.shard import Shard, channel
from chatserver.bus.slots import Address, Topology, read_topology, slot
from chatserver.server.supervisor import Supervisor

log = logging.getLogger("chatserver.bus.cluster")

TOPOLOGY_TASK = "redis-bus-topology"
FAST_REFRESH = 0.5


def make_cluster_client(url: str) -> RedisCluster:
    """For the other Redis state (presence): fails fast, as the single-Redis client does."""
    return RedisCluster.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0), protocol=2,
    )


class ClusterBus:
    def __init__(
        self, url: str, *, client: RedisCluster | None = None, backoff_max: float = 5.0,
        stall_timeout: float = 15.0, refresh_interval: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        self._seeds: list[Address] = [(parts.hostname or "127.0.0.1", parts.port or 6379)]
        self._owns_client = client is None
        self.client = client if client is not None else make_cluster_client(url)
        self.backoff_max = backoff_max
        self.stall_timeout = stall_timeout
        self.refresh_interval = refresh_interval
        self._handler: BusHandler | None = None
        self._supervisor: Supervisor | None = None
        self._topology: Topology | None = None
        self._shards: dict[Address, Shard] = {}
        self._topics: set[str] = set()
        self._refresh_now = asyncio.Event()
        self._batch = PublishBatch(self._send)

    @property
    def state(self) -> BusState:
        states = {shard.state for shard in self._shards.values()}
        if not states or states == {BusState.CONNECTING}:
            return BusState.CONNECTING
        return BusState.OK if states == {BusState.OK} else BusState.DOWN

    def node_states(self) -> dict[str, BusState]:
        return {shard.name: shard.state for shard in self._shards.values()}

    async def connect(self, handler: BusHandler, supervisor: Supervisor) -> None:
        self._handler = handler
        self._supervisor = supervisor
        supervisor.start(TOPOLOGY_TASK, self._topology_loop, initial_backoff=BACKOFF_START,
                         max_backoff=self.backoff_max, required=False)

    async def close(self) -> None:
        if self._supervisor is not None:
            await self._supervisor.stop(TOPOLOGY_TASK)
        for address in list(self._shards):
            await self._drop_shard(address)
        self._handler = None
        if self._owns_client:
            await self.client.aclose()

    # --- publishing ------------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._batch.publish(topic, payload)

    async def _send(self, outgoing: Outgoing) -> None:
        """One SPUBLISH pipeline per primary, all at once; a refusal re-reads the slots."""
        per_shard: dict[Shard, Outgoing] = {}
        for topic, payload in outgoing:
            shard = self._shard_for(topic)
            if shard is None:
                self._refresh_now.set()
                continue
            per_shard.setdefault(shard, []).append((topic, payload))
        results = await asyncio.gather(
            *(shard.publish(items) for shard, items in per_shard.items()), return_exceptions=True)
        for result in results:
            if result is not True:
                # Lost publishes are filled from Postgres by the other instances.
                log.debug("a publish was refused or failed: %r", result)
                self._refresh_now.set()

    # --- following topics ------------------------------------------------------------------------

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        shard = self._shard_for(topic)
        if shard is not None:
            shard.wanted.add(topic)
            await shard.sync()

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        shard = self._shard_for(topic)
        if shard is not None:
            shard.wanted.discard(topic)
            await shard.sync()

    def _shard_for(self, topic: str) -> Shard | None:
        if self._topology is None:
            return None
        owner = self._topology.owner(slot(channel(topic)))
        return None if owner is None else self._shards.get(owner)

    # --- what shards report ----------------------------------------------------------------------

    def on_payload(self, topic: str, payload: bytes) -> None:
        if self._handler is not None:
            self._handler.on_payload(topic, payload)

    def on_lost(self, shard: Shard) -> None:
        self._refresh_now.set()

    def on_fill(self) -> None:
        if self._handler is not None:
            self._handler.on_reconnect()

    # --- the slot map ----------------------------------------------------------------------------

    async def _topology_loop(self) -> None:
        while True:
            await self.refresh()
            down = any(shard.state is not BusState.OK for shard in self._shards.values())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FAST_REFRESH if down else self.refresh_interval):
                    await self._refresh_now.wait()
            self._refresh_now.clear()

    async def refresh(self) -> None:
        """Re-read the slots; start shards for new primaries, stop gone ones, move topics."""
        known = self._topology.nodes if self._topology is not None else frozenset()
        topology = await read_topology([*self._seeds, *known])
        if self._topology is None or topology.ranges != self._topology.ranges:
            log.info("redis cluster: %d slot ranges on primaries %s", len(topology.ranges),
                     sorted(f"{h}:{p}" for h, p in topology.primaries))
        self._topology = topology
        for address in self._shards.keys() - topology.primaries:
            await self._drop_shard(address)
        for address in topology.primaries - self._shards.keys():
            self._add_shard(address)
        self._assign()
        await asyncio.gather(*(shard.sync() for shard in self._shards.values()))

    def _assign(self) -> None:
        wanted: dict[Shard, set[str]] = {shard: set() for shard in self._shards.values()}
        for topic in self._topics:
            shard = self._shard_for(topic)
            if shard is not None:
                wanted[shard].add(topic)
        for shard, topics in wanted.items():
            if topics - shard.wanted:
                shard.fill_due = True  # topics moved here: fill them once subscribed
            shard.wanted = topics

    def _add_shard(self, address: Address) -> None:
        assert self._supervisor is not None
        shard = self._shards[address] = Shard(address, self, stall_timeout=self.stall_timeout)
        self._supervisor.start(f"{LISTENER_TASK}:{shard.name}", shard.listen,
                               initial_backoff=BACKOFF_START, max_backoff=self.backoff_max,
                               required=False)

    async def _drop_shard(self, address: Address) -> None:
        shard = self._shards.pop(address)
        if self._supervisor is not None:
            await self._supervisor.stop(f"{LISTENER_TASK}:{shard.name}")
        with contextlib.suppress(RedisError, OSError):
            await shard.close()
