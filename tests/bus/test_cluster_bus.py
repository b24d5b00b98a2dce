"""The Redis Cluster bus on a real 3-primary + 3-replica cluster (Debian's redis-server 7)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from chatserver.bus import BusState, create_bus
from chatserver.bus.cluster import TOPOLOGY_TASK, ClusterBus
from chatserver.bus.shard import channel
from chatserver.bus.slots import Address, read_topology, slot
from chatserver.realtime.presence import _key
from chatserver.server.supervisor import Supervisor
from tests.bus.test_bus import Recorder, until_ok
from tests.realtime.helpers import WAIT
from tests.redis_cluster import RedisCluster


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    supervisor = Supervisor()
    yield supervisor
    await supervisor.close()


async def topics_on_every_primary(cluster: RedisCluster) -> dict[Address, str]:
    """One topic per primary: a name whose channel hashes to a slot that primary owns."""
    topology = await read_topology([("127.0.0.1", port) for port in cluster.ports])
    found: dict[Address, str] = {}
    n = 0
    while len(found) < len(topology.primaries):
        topic = f"room-{n}"
        owner = topology.owner(slot(channel(topic)))
        assert owner is not None
        found.setdefault(owner, topic)
        n += 1
    return found


async def subscribed_on(address: Address, topic: str) -> None:
    """Until `address` counts a subscriber of the topic's shard channel."""
    client = Redis(host=address[0], port=address[1])
    try:
        async def poll() -> None:
            while (await client.execute_command("PUBSUB", "SHARDNUMSUB", channel(topic)))[1] < 1:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), WAIT)
    finally:
        await client.aclose()


def test_cluster_backend_from_settings() -> None:
    bus = create_bus("redis://127.0.0.1:1/0", backoff_max=1, stall_timeout=1, cluster=True)
    assert isinstance(bus, ClusterBus)


def test_a_conversation_keeps_its_channel_and_presence_key_in_one_slot() -> None:
    import uuid

    conversation = uuid.uuid4()
    assert slot(channel(conversation.hex)) == slot(_key(conversation))


async def test_every_primary_carries_its_own_topics(
    redis_cluster: RedisCluster, supervisor: Supervisor
) -> None:
    publisher, subscriber = ClusterBus(redis_cluster.url), ClusterBus(redis_cluster.url)
    recorder = Recorder()
    other_supervisor = Supervisor()
    try:
        await publisher.connect(Recorder(), other_supervisor)
        await subscriber.connect(recorder, supervisor)
        await until_ok(subscriber)
        await until_ok(publisher)
        topics = await topics_on_every_primary(redis_cluster)
        assert len(topics) == 3
        assert set(subscriber.node_states()) == {f"{h}:{p}" for h, p in topics}
        for topic in topics.values():
            await subscriber.subscribe(topic)
        for address, topic in topics.items():
            await subscribed_on(address, topic)  # SSUBSCRIBE reached the owning primary
        for n, topic in enumerate(topics.values()):
            await publisher.publish(topic, b"%d" % n)
        received = {await recorder.next() for _ in topics}
        assert received == {(topic, b"%d" % n) for n, topic in enumerate(topics.values())}
        await subscriber.unsubscribe(next(iter(topics.values())))
        for topic in topics.values():
            await publisher.publish(topic, b"after")
        # Each shard keeps order, so the two followed topics arriving shows nothing else comes.
        late = {await recorder.next() for _ in range(2)}
        assert late == {(topic, b"after") for topic in list(topics.values())[1:]}
        assert recorder.payloads.empty()
        assert other_supervisor.health[TOPOLOGY_TASK].restarts == 0
    finally:
        await publisher.close()
        await subscriber.close()
        await other_supervisor.close()


async def test_subscriptions_made_together_go_in_one_write_and_all_arrive(
    redis_cluster: RedisCluster, supervisor: Supervisor
) -> None:
    bus = ClusterBus(redis_cluster.url)
    recorder = Recorder()
    try:
        await bus.connect(recorder, supervisor)
        await until_ok(bus)
        topics = [f"many-{n}" for n in range(300)]
        await asyncio.gather(*(bus.subscribe(t) for t in topics))
        await asyncio.gather(*(bus.publish(t, t.encode()) for t in topics))
        got = {await recorder.next() for _ in topics}
        assert got == {(t, t.encode()) for t in topics}
    finally:
        await bus.close()


async def test_a_dropped_shard_channel_is_subscribed_again_and_filled(
    redis_cluster: RedisCluster, supervisor: Supervisor
) -> None:
    """A SUNSUBSCRIBE the bus did not ask for (what the server sends when a slot moves away)
    makes it re-read the slots, subscribe again and ask for a fill."""
    bus = ClusterBus(redis_cluster.url)
    recorder = Recorder()
    try:
        await bus.connect(recorder, supervisor)
        await until_ok(bus)
        await bus.subscribe("moving")
        shard = bus._shard_for("moving")
        assert shard is not None
        await subscribed_on(shard.address, "moving")
        shard._on_reply([b"sunsubscribe", channel("moving").encode(), 0])
        await asyncio.wait_for(recorder.reconnected.wait(), WAIT)
        await bus.publish("moving", b"still here")
        assert await recorder.next() == ("moving", b"still here")
    finally:
        await bus.close()


async def test_primary_killed_the_replica_takes_over_and_the_bus_follows(
    redis_cluster: RedisCluster, supervisor: Supervisor
) -> None:
    bus = ClusterBus(redis_cluster.url, backoff_max=0.2)
    recorder = Recorder()
    victim = None
    try:
        await bus.connect(recorder, supervisor)
        await until_ok(bus)
        topics = await topics_on_every_primary(redis_cluster)
        for topic in topics.values():
            await bus.subscribe(topic)
        victim = next(iter(topics))
        await subscribed_on(victim, topics[victim])
        redis_cluster.kill(victim[1])
        await asyncio.to_thread(redis_cluster.wait_promoted, victim[1])
        await asyncio.wait_for(recorder.reconnected.wait(), WAIT)  # the hub fills from Postgres
        await until_ok(bus)
        assert f"{victim[0]}:{victim[1]}" not in bus.node_states()
        await bus.publish(topics[victim], b"on the new primary")
        assert await recorder.next() == (topics[victim], b"on the new primary")
        assert bus.state is BusState.OK
    finally:
        await bus.close()
        if victim is not None:
            await asyncio.to_thread(redis_cluster.restart, victim[1])


async def move_slot(cluster: RedisCluster, slot_number: int, source: Address,
                    target: Address) -> None:
    """Reshard one (empty) slot from `source` to `target`, as redis-cli --cluster reshard does."""
    src, dst = (Redis(host=a[0], port=a[1]) for a in (source, target))
    try:
        src_id = (await src.execute_command("CLUSTER", "MYID")).decode()
        dst_id = (await dst.execute_command("CLUSTER", "MYID")).decode()
        await dst.execute_command("CLUSTER", "SETSLOT", slot_number, "IMPORTING", src_id)
        await src.execute_command("CLUSTER", "SETSLOT", slot_number, "MIGRATING", dst_id)
        for client in (dst, src):
            await client.execute_command("CLUSTER", "SETSLOT", slot_number, "NODE", dst_id)
    finally:
        await src.aclose()
        await dst.aclose()
    await asyncio.to_thread(cluster.wait_ready)


async def test_a_resharded_slot_is_followed_to_its_new_primary(
    redis_cluster: RedisCluster, supervisor: Supervisor
) -> None:
    bus = ClusterBus(redis_cluster.url)
    recorder = Recorder()
    topics = await topics_on_every_primary(redis_cluster)
    (source, topic), (target, _) = list(topics.items())[:2]
    moving = slot(channel(topic))
    try:
        await bus.connect(recorder, supervisor)
        await until_ok(bus)
        await bus.subscribe(topic)
        await subscribed_on(source, topic)
        await move_slot(redis_cluster, moving, source, target)
        # The old owner drops the channel (SUNSUBSCRIBE); the bus re-reads the slots, subscribes
        # on the new owner, and asks for a fill.
        await asyncio.wait_for(recorder.reconnected.wait(), WAIT)
        await subscribed_on(target, topic)
        await bus.publish(topic, b"resharded")
        assert await recorder.next() == (topic, b"resharded")
    finally:
        await bus.close()
        await move_slot(redis_cluster, moving, target, source)
