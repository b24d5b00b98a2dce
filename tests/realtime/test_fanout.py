"""Several instances sharing Postgres and a real Redis: ordered, complete delivery everywhere."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from chatserver.app import create_app
from chatserver.appkeys import HUB, SUPERVISOR
from chatserver.bus.redis import LISTENER_TASK
from chatserver.config import Settings
from chatserver.store import messages as message_store
from chatserver.store.messages import NewMessage
from tests.conftest import Api
from tests.realtime.helpers import WAIT, Watcher, send, watch
from tests.redis_server import RedisServer

Cluster = Callable[..., Awaitable[list[Api]]]


@pytest.fixture
def cluster(settings: Settings, aiohttp_client: Any, make_key: Any,
            redis_server: RedisServer) -> Cluster:
    """`await cluster(n, redis_url=..., **realtime)`: n app instances, each with an admin client."""

    async def make(n: int, redis_url: str | None = None, **realtime: Any) -> list[Api]:
        options = {"reconcile_interval": 0.5, "gap_wait": 0.1, **realtime}
        config = settings.replace(redis={"url": redis_url or redis_server.url}, realtime=options)
        key = await make_key("admin")
        return [Api(await aiohttp_client(create_app(config)), key) for _ in range(n)]

    return make


async def rest_publisher(api: Api, cid: str, count: int, tag: str) -> None:
    for i in range(count):
        await api.post_message(cid, f"{tag}-{i}", client_id=f"{tag}-{i}")


async def ws_publisher(api: Api, cid: str, count: int, tag: str) -> Watcher:
    """Sends over its own socket, each after the previous ack; it also watches the stream."""
    watcher = await watch(api.client, cid, api.key)
    for i in range(count):
        await send(watcher.ws, type="message", content=f"{tag}-{i}", client_id=f"{tag}-{i}")
        ack = await asyncio.wait_for(watcher.acks.get(), WAIT)
        assert ack["client_id"] == f"{tag}-{i}", ack
    return watcher


def assert_exactly(watchers: list[Watcher], total: int) -> None:
    for watcher in watchers:
        assert watcher.seqs == list(range(1, total + 1)), watcher.seqs


async def test_every_socket_gets_every_message_in_order(cluster: Cluster) -> None:
    apis = await cluster(3)
    cid = await apis[0].create_conversation()
    watchers = [await watch(api.client, cid, api.key) for api in apis for _ in range(2)]
    per_publisher = 15
    jobs = [rest_publisher(api, cid, per_publisher, f"rest{n}") for n, api in enumerate(apis)]
    ws_jobs = [ws_publisher(api, cid, per_publisher, f"ws{n}") for n, api in enumerate(apis)]
    results = await asyncio.gather(*jobs, *ws_jobs)
    publishers = [r for r in results if isinstance(r, Watcher)]
    total = per_publisher * 6
    everyone = watchers + publishers
    await asyncio.gather(*(w.has_seq(total) for w in everyone))
    assert_exactly(everyone, total)
    _, conversation, _ = await apis[1].call("GET", f"/conversations/{cid}", expect=200)
    assert conversation["last_seq"] == total
    await asyncio.gather(*(w.close() for w in everyone))


async def test_reconnect_mid_stream_with_since(cluster: Cluster) -> None:
    a, b = await cluster(2)
    cid = await a.create_conversation()
    first = await watch(a.client, cid, a.key)
    steady = await watch(b.client, cid, b.key)
    publishing = asyncio.gather(rest_publisher(a, cid, 20, "a"), rest_publisher(b, cid, 20, "b"))
    await first.has_seq(10)
    await first.close()
    seen = first.seqs
    resumed = await watch(b.client, cid, b.key, since=seen[-1])
    await publishing
    await asyncio.gather(resumed.has_seq(40), steady.has_seq(40))
    assert seen + resumed.seqs == list(range(1, 41))
    assert_exactly([steady], 40)
    await resumed.close()
    await steady.close()


async def test_redis_killed_and_restarted_mid_stream(cluster: Cluster) -> None:
    redis = RedisServer().start()
    try:
        a, b = await cluster(2, redis_url=redis.url, bus_backoff_max=0.2)
        cid = await a.create_conversation()
        watchers = [await watch(api.client, cid, api.key) for api in (a, b, a, b)]
        await asyncio.gather(rest_publisher(a, cid, 10, "a1"), rest_publisher(b, cid, 10, "b1"))
        redis.kill()
        # Posting keeps working while Redis is down, and /readyz says so.
        await asyncio.gather(rest_publisher(a, cid, 10, "a2"), rest_publisher(b, cid, 10, "b2"))
        _, ready, _ = await a.call("GET", "/readyz", expect=200)
        assert ready["bus"]["state"] in ("down", "connecting")
        redis.start()
        await asyncio.gather(rest_publisher(a, cid, 10, "a3"), rest_publisher(b, cid, 10, "b3"))
        await asyncio.gather(*(w.has_seq(60) for w in watchers))
        assert_exactly(watchers, 60)
        for api in (a, b):
            await wait_for_bus(api, "ok")
        await asyncio.gather(*(w.close() for w in watchers))
    finally:
        redis.kill()


async def wait_for_bus(api: Api, state: str) -> None:
    async def poll() -> None:
        while True:
            _, ready, _ = await api.call("GET", "/readyz")
            if ready["bus"]["state"] == state:
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), WAIT)


async def test_committed_but_never_published_is_reconciled(cluster: Cluster, db: Any) -> None:
    a, b = await cluster(2)
    cid = await a.create_conversation()
    watchers = [await watch(api.client, cid, api.key) for api in (a, b)]
    # As if an instance died between commit and publish: the row exists, nobody announced it.
    await message_store.insert_message(db, NewMessage(
        conversation_id=uuid.UUID(hex=cid), content="orphan", content_type="TEXT",
        type="USER_INPUT", status="RECEIVED", created_by="ghost",
    ))
    await asyncio.gather(*(w.has_seq(1) for w in watchers))
    assert_exactly(watchers, 1)
    await asyncio.gather(*(w.close() for w in watchers))


async def test_gap_is_filled_from_postgres_in_order(cluster: Cluster, db: Any) -> None:
    a, b = await cluster(2, reconcile_interval=3600.0)
    cid = await a.create_conversation()
    watcher = await watch(b.client, cid, b.key)
    await message_store.insert_message(db, NewMessage(
        conversation_id=uuid.UUID(hex=cid), content="unpublished", content_type="TEXT",
        type="USER_INPUT", status="RECEIVED", created_by="ghost",
    ))
    await a.post_message(cid, "published")  # seq 2 reaches b first; b fills seq 1 from Postgres
    await watcher.has_seq(2)
    assert watcher.seqs == [1, 2]
    await watcher.close()


async def test_presence_across_instances(cluster: Cluster, make_key: Any) -> None:
    a, b = await cluster(2)
    cid = await a.create_conversation()
    alice = await watch(a.client, cid, await make_key("alice"))
    await alice.until(lambda: {"type": "presence.join", "user": "alice"} in alice.frames)
    bob = await watch(b.client, cid, await make_key("bob"))
    await bob.until(lambda: any(f["type"] == "presence" for f in bob.frames))
    members = next(f for f in bob.frames if f["type"] == "presence")["members"]
    assert members == ["alice", "bob"]
    await alice.until(lambda: {"type": "presence.join", "user": "bob"} in alice.frames)
    await bob.close()
    await alice.until(lambda: {"type": "presence.leave", "user": "bob"} in alice.frames)
    carol = await watch(b.client, cid, await make_key("carol"))

    async def typing_reaches_carol() -> None:
        # Typing is best-effort (never stored, never refilled), so say it until it is heard.
        while {"type": "typing", "user": "alice"} not in carol.frames:
            await send(alice.ws, type="typing")
            await asyncio.sleep(0.05)

    await asyncio.wait_for(typing_reaches_carol(), WAIT)
    await alice.close()
    await carol.close()


async def test_token_minted_on_one_instance_works_on_another(cluster: Cluster) -> None:
    a, b = await cluster(2)
    cid = await a.create_conversation()
    _, created, _ = await a.call("POST", f"/conversations/{cid}/tokens", {"user": "u"},
                                 expect=201)
    watcher = await watch(
        b.client, cid, None, protocols=("chatserver.v1", f"bearer.{created['token']}")
    )
    await a.post_message(cid, "hi")
    await watcher.has_seq(1)
    await watcher.close()


async def test_one_redis_subscription_per_instance_per_conversation(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    from redis.asyncio import Redis

    a, b = await cluster(2)
    cid = await a.create_conversation()
    watchers = [await watch(api.client, cid, api.key) for api in (a, b) for _ in range(3)]
    client = Redis.from_url(redis_server.url)
    try:
        counts = await client.pubsub_numsub(f"chatserver:bus:{cid}")
        assert counts[0][1] == 2
    finally:
        await client.aclose()
    await asyncio.gather(*(w.close() for w in watchers))
    assert all(cid not in api.client.server.app[HUB].rooms for api in (a, b))


async def test_readyz_reports_bus(cluster: Cluster) -> None:
    (a,) = await cluster(1)
    await wait_for_bus(a, "ok")


async def test_stalled_listener_is_restarted_and_gap_filled(cluster: Cluster) -> None:
    from redis.asyncio import Redis

    redis = RedisServer().start()
    admin = Redis.from_url(redis.url)
    try:
        a, b = await cluster(2, redis_url=redis.url, listener_stall_timeout=0.6,
                             bus_backoff_max=0.2)
        cid = await a.create_conversation()
        watcher = await watch(b.client, cid, b.key)
        await a.post_message(cid, "before")
        await watcher.has_seq(1)
        listener = b.client.server.app[SUPERVISOR].health[LISTENER_TASK]
        restarts = listener.restarts
        # Redis stops answering every client for a while: the listener hears nothing back.
        await admin.execute_command("CLIENT", "PAUSE", "2000", "ALL")
        await asyncio.gather(a.post_message(cid, "during"), a.post_message(cid, "during too"))
        await watcher.has_seq(3)
        await a.post_message(cid, "after")
        await watcher.has_seq(4)
        assert watcher.seqs == [1, 2, 3, 4]
        assert listener.restarts > restarts
        await watcher.close()
    finally:
        await admin.aclose()
        redis.kill()


async def test_read_horizons_reach_every_instance(cluster: Cluster) -> None:
    a, b = await cluster(2)
    cid = await a.create_conversation()
    for n in range(3):
        await a.post_message(cid, f"m{n}")
    _, minted, _ = await a.call("POST", f"/conversations/{cid}/tokens", {"participant": "alice"},
                                expect=201)
    on_b = await watch(b.client, cid, b.key)
    alice = await watch(a.client, cid, minted["token"])  # alice's socket is on instance a
    await send(alice.ws, type="read", seq=2)
    await on_b.until(lambda: [f for f in on_b.frames if f["type"] == "read"])
    assert [f for f in on_b.frames if f["type"] == "read"] == [
        {"type": "read", "participant": "alice", "seq": 2}]
    # Over REST on b, with an API key on alice's behalf: a's sockets get it too.
    await b.call("POST", f"/conversations/{cid}/participants/alice/read", {"seq": 3}, expect=200)
    await alice.until(lambda: [f["seq"] for f in alice.frames if f["type"] == "read"][-1:] == [3])
    await asyncio.gather(alice.close(), on_b.close())
