"""The bus backends, each against the same expectations (Redis on a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from chatserver.bus import Bus, BusState, create_bus
from chatserver.bus.memory import MemoryBus
from chatserver.bus.redis import LISTENER_TASK, PREFIX, RedisBus
from chatserver.server.supervisor import Supervisor, TaskState
from tests.realtime.helpers import WAIT
from tests.redis_server import RedisServer


class Recorder:
    def __init__(self) -> None:
        self.payloads: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.reconnects = 0
        self.reconnected = asyncio.Event()

    def on_payload(self, topic: str, payload: bytes) -> None:
        self.payloads.put_nowait((topic, payload))

    def on_reconnect(self) -> None:
        self.reconnects += 1
        self.reconnected.set()

    async def next(self) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.payloads.get(), WAIT)


async def until_ok(bus: Bus) -> None:
    async def poll() -> None:
        while bus.state is not BusState.OK:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), WAIT)


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    supervisor = Supervisor()
    yield supervisor
    await supervisor.close()


@pytest.fixture(params=["memory", "redis"])
async def pair(request: Any, redis_server: RedisServer) -> AsyncIterator[tuple[Bus, Bus]]:
    """(publisher, subscriber): one bus for memory, two instances' buses for Redis."""
    if request.param == "memory":
        bus = MemoryBus()
        yield bus, bus
        await bus.close()
        return
    client = Redis.from_url(redis_server.url)
    publisher = RedisBus(client=client)  # an injected client is shared, not closed by the bus
    subscriber = RedisBus(redis_server.url)
    yield publisher, subscriber
    await publisher.close()
    await subscriber.close()
    await client.aclose()


async def test_followed_topics_receive_and_others_do_not(
    pair: tuple[Bus, Bus], supervisor: Supervisor
) -> None:
    publisher, subscriber = pair
    recorder = Recorder()
    if publisher is not subscriber:
        await publisher.connect(Recorder(), Supervisor())
    await subscriber.connect(recorder, supervisor)
    await until_ok(subscriber)
    await subscriber.subscribe("room-a")
    await subscriber.subscribe("room-b")
    await followed(subscriber, "room-b")
    await publisher.publish("room-a", b"one")
    assert await recorder.next() == ("room-a", b"one")
    await subscriber.unsubscribe("room-a")
    # Pub/sub keeps order per connection: b arriving without a proves a was not delivered.
    await publisher.publish("room-a", b"dropped")
    await publisher.publish("room-b", b"two")
    assert await recorder.next() == ("room-b", b"two")
    assert recorder.payloads.empty()


async def followed(bus: Bus, topic: str) -> None:
    """Wait until Redis has processed the SUBSCRIBE (the memory bus follows at once)."""
    if not isinstance(bus, RedisBus):
        return

    async def poll() -> None:
        while (await bus.client.pubsub_numsub(PREFIX + topic))[0][1] < 1:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), WAIT)


def test_backend_from_url() -> None:
    assert isinstance(create_bus("", backoff_max=1, stall_timeout=1), MemoryBus)
    assert isinstance(create_bus("redis://127.0.0.1:1/0", backoff_max=1, stall_timeout=1),
                      RedisBus)


async def test_redis_listener_comes_back_after_redis_restarts(supervisor: Supervisor) -> None:
    redis = RedisServer().start()
    bus = RedisBus(redis.url, backoff_max=0.1)
    recorder = Recorder()
    try:
        await bus.connect(recorder, supervisor)
        await until_ok(bus)
        await bus.subscribe("room")
        health = supervisor.health[LISTENER_TASK]
        assert (health.state, health.restarts, health.required) == (TaskState.RUNNING, 0, False)
        redis.kill()
        await bus.publish("room", b"lost")  # never raises while Redis is down
        redis.start()
        await asyncio.wait_for(recorder.reconnected.wait(), WAIT)
        assert bus.state is BusState.OK and health.restarts >= 1
        assert health.state is TaskState.RUNNING
        await bus.publish("room", b"back")
        assert await recorder.next() == ("room", b"back")
    finally:
        await bus.close()
        redis.kill()
    assert health.state is TaskState.STOPPED  # close() stopped the task; its health stays
