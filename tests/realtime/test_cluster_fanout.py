"""Two instances on a real Redis Cluster (3 primaries, 3 replicas): the delivery guarantees of
the single-Redis fan-out tests, and a primary killed with SIGKILL mid-stream."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatserver.app import create_app
from chatserver.appkeys import HUB
from chatserver.bus.cluster import ClusterBus
from chatserver.bus.shard import channel
from chatserver.bus.slots import read_topology, slot
from chatserver.config import Settings
from tests.conftest import Api
from tests.realtime.helpers import WAIT, watch
from tests.realtime.test_fanout import Cluster, assert_exactly, rest_publisher, ws_publisher
from tests.redis_cluster import RedisCluster


@pytest.fixture
def cluster(settings: Settings, aiohttp_client: Any, make_key: Any,
            redis_cluster: RedisCluster) -> Cluster:
    """`await cluster(n, **realtime)`: n app instances on the Redis Cluster ([redis] cluster)."""

    async def make(n: int, **realtime: Any) -> list[Api]:
        options = {"reconcile_interval": 0.5, "gap_wait": 0.1, "bus_backoff_max": 0.2,
                   **realtime}
        config = settings.replace(redis={"url": redis_cluster.url, "cluster": True},
                                  realtime=options)
        key = await make_key("admin")
        apis = [Api(await aiohttp_client(create_app(config)), key) for _ in range(n)]
        for api in apis:
            await bus_ok(api)
        return apis

    return make


async def bus_ok(api: Api) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            _, ready, _ = await api.call("GET", "/readyz", expect=200)
            if ready["bus"]["state"] == "ok":
                return dict(ready["bus"])
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), WAIT)


async def test_every_socket_on_both_instances_gets_every_message_once_in_order(
    cluster: Cluster,
) -> None:
    a, b = await cluster(2)
    cid = await a.create_conversation()
    watchers = [await watch(api.client, cid, api.key) for api in (a, b, a, b)]
    results = await asyncio.gather(
        rest_publisher(a, cid, 15, "ra"), rest_publisher(b, cid, 15, "rb"),
        ws_publisher(a, cid, 15, "wa"), ws_publisher(b, cid, 15, "wb"),
    )
    everyone = watchers + [r for r in results if r is not None]
    await asyncio.gather(*(w.has_seq(60) for w in everyone))
    assert_exactly(everyone, 60)
    await asyncio.gather(*(w.close() for w in everyone))


async def test_readyz_and_metrics_show_each_primary(
    cluster: Cluster, redis_cluster: RedisCluster
) -> None:
    (a,) = await cluster(1)
    bus = await bus_ok(a)
    primaries = {f"127.0.0.1:{port}" for port in redis_cluster.primaries()}
    assert bus["nodes"] == {node: "ok" for node in primaries}
    response = await a.client.get("/metrics")
    text = await response.text()
    for node in primaries:
        assert f'chatserver_bus_node_up{{node="{node}"}} 1.0' in text


async def test_conversations_spread_over_the_primaries_and_presence_works(
    cluster: Cluster, redis_cluster: RedisCluster, make_key: Any
) -> None:
    a, b = await cluster(2)
    cids = [await a.create_conversation() for _ in range(12)]
    watchers = [await watch(api.client, cid, api.key) for cid in cids for api in (a, b)]
    topology = await read_topology([("127.0.0.1", p) for p in redis_cluster.ports])
    owners = {topology.owner(slot(channel(cid.replace("-", "")))) for cid in cids}
    assert len(owners) == 3  # 12 conversations land on every primary (p = 1 - 3 * (2/3)^12)
    await asyncio.gather(*(a.post_message(cid, "hi") for cid in cids))
    await asyncio.gather(*(w.has_seq(1) for w in watchers))
    alice = await watch(b.client, cids[0], await make_key("alice"))
    await alice.until(lambda: any(f["type"] == "presence" for f in alice.frames))
    # The admin sockets on both instances are present too: presence is read across instances.
    members = next(f for f in alice.frames if f["type"] == "presence")["members"]
    assert members == ["admin", "alice"]
    await asyncio.gather(*(w.close() for w in [*watchers, alice]))


async def test_primary_killed_mid_stream_loses_nothing_and_delivery_resumes(
    cluster: Cluster, redis_cluster: RedisCluster
) -> None:
    a, b = await cluster(2)
    cid = await a.create_conversation()
    watchers = [await watch(api.client, cid, api.key) for api in (a, b, a, b)]
    bus = b.client.server.app[HUB].bus
    assert isinstance(bus, ClusterBus)
    owner = bus._shard_for(cid.replace("-", ""))
    assert owner is not None
    victim = owner.address[1]
    publishing = asyncio.gather(rest_publisher(a, cid, 40, "a"), rest_publisher(b, cid, 40, "b"))
    try:
        await watchers[0].has_seq(10)
        redis_cluster.kill(victim)
        await publishing  # posting never stops while the primary is down
        await asyncio.to_thread(redis_cluster.wait_promoted, victim)
        await asyncio.gather(*(w.has_seq(80) for w in watchers))
        for api in (a, b):
            nodes = (await bus_ok(api))["nodes"]
            assert f"127.0.0.1:{victim}" not in nodes
        # Delivery through the bus resumes on the promoted replica: one more from each side.
        await rest_publisher(a, cid, 1, "after-a")
        await rest_publisher(b, cid, 1, "after-b")
        await asyncio.gather(*(w.has_seq(82) for w in watchers))
        assert_exactly(watchers, 82)
    finally:
        await asyncio.gather(publishing, return_exceptions=True)
        await asyncio.to_thread(redis_cluster.restart, victim)
    # The old primary is back as a replica; the instances carry on.
    await rest_publisher(a, cid, 1, "restarted")
    await asyncio.gather(*(w.has_seq(83) for w in watchers))
    assert_exactly(watchers, 83)
    await asyncio.gather(*(w.close() for w in watchers))
