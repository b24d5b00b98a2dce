"""Every operational metric appears on /metrics and moves: sockets, messages in (by source) and out,
fan-out latency, webhook attempts by result and queue depth, bus state and reconnects."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from chatserver.app import create_app
from chatserver.config import Settings
from tests.conftest import Api
from tests.realtime.helpers import send, watch
from tests.redis_server import RedisServer
from tests.webhooks.helpers import eventually, hooked_conversation, start_receiver, status
from tests.webhooks.helpers import webhook_settings as hook_settings


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels) -> value."""
    text = await (await api.client.get("/metrics")).text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_socket_and_message_metrics_move(api: Api) -> None:
    cid = await api.create_conversation()
    one, two = await watch(api.client, cid, api.key), await watch(api.client, cid, api.key)
    before = await scrape(api)
    assert value(before, "chatserver_sockets_open") == 2
    await api.post_message(cid, "over rest")
    await send(one.ws, type="message", content="over ws", client_id="w1")
    await one.acks.get()
    await two.has_seq(2)
    after = await scrape(api)
    assert value(after, "chatserver_messages_in_total", source="rest") == 1
    assert value(after, "chatserver_messages_in_total", source="ws") == 1
    # Two messages, two sockets each; one latency observation per message, not per socket.
    assert value(after, "chatserver_messages_out_total") == 4
    assert value(after, "chatserver_fanout_latency_seconds_count") == 2
    assert value(after, "chatserver_fanout_latency_seconds_sum") >= 0
    assert value(after, "chatserver_bus_up") == 1
    await one.close()
    await two.close()

    async def closed() -> bool:
        return value(await scrape(api), "chatserver_sockets_open") == 0

    await eventually(closed)


async def test_webhook_attempts_by_result_and_queue_depth(
    database_url: str, aiohttp_client: Any, aiohttp_server: Any, make_key: Any
) -> None:
    # One failed attempt, then a long wait: the delivery stays pending (queue depth 1).
    settings = hook_settings(database_url, schedule=(3600.0,), backoff_floor=3600.0)
    receiver = await start_receiver(aiohttp_server)
    receiver.then("/hook", status(500))
    api = Api(await aiohttp_client(create_app(settings)), await make_key("admin"))
    cid, _ = await hooked_conversation(api, receiver)
    await api.post_message(cid, "hello")
    await receiver.wait_for(1)

    async def counted() -> bool:
        samples = await scrape(api)
        return (value(samples, "chatserver_webhook_attempts_total", result="retry") == 1
                and value(samples, "chatserver_webhook_queue_depth") == 1)

    await eventually(counted)


async def test_bus_state_and_reconnects_in_the_app_registry(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    redis = RedisServer().start()
    try:
        app = create_app(settings.replace(
            redis={"url": redis.url},
            realtime={"bus_backoff_max": 0.2, "listener_stall_timeout": 3.0}))
        api = Api(await aiohttp_client(app), await make_key("admin"))

        async def bus_up(expected: float) -> bool:
            return value(await scrape(api), "chatserver_bus_up") == expected

        await eventually(lambda: bus_up(1))
        assert value(await scrape(api), "chatserver_bus_reconnects_total") == 0
        redis.kill()
        await eventually(lambda: bus_up(0))
        redis.start()
        await eventually(lambda: bus_up(1))
        assert value(await scrape(api), "chatserver_bus_reconnects_total") >= 1
    finally:
        redis.kill()
