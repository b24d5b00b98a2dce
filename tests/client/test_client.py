"""`chatserver.client` against the real server: typed REST calls, idempotent sends that survive
retries, a subscription that resumes across a server restart with no gap and no duplicate, and
webhook verification with the Standard Webhooks secret."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from chatserver.app import create_app
from chatserver.client import (
    ChatClient,
    ChatError,
    SubscriptionClosed,
    WebhookVerificationError,
    verify_webhook,
)
from chatserver.config import Settings
from tests.localhost import free_port
from tests.realtime.helpers import WAIT


class Restartable:
    """The app on a fixed port, stopped and started again (same database) while clients run."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.settings = settings.replace(server={"host": "127.0.0.1", "port": self.port})
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.runner = web.AppRunner(create_app(self.settings))
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()
        self.runner = None


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Restartable]:
    # heartbeat 0 is "no pings" (every socket was closed at once with 1006 before that held)
    running = Restartable(settings.replace(realtime={"heartbeat": 0.0}))
    await running.start()
    yield running
    if running.runner is not None:
        await running.stop()


@pytest.fixture
async def chat(server: Restartable, make_key: Any) -> AsyncIterator[ChatClient]:
    async with ChatClient(server.url, await make_key("client"), backoff_cap=0.5) as client:
        yield client


async def test_rest_calls_and_problems(chat: ChatClient) -> None:
    conversation = await chat.create_conversation(channel="API", metadata={"k": 1})
    fetched = await chat.get_conversation(conversation["id"])
    assert fetched["channel"] == "API" and fetched["metadata"] == {"k": 1}
    first = await chat.send(conversation["id"], "one")
    await chat.send(conversation["id"], "two")
    assert [m["content"] for m in await chat.list_messages(conversation["id"])] == ["two", "one"]
    assert first["seq"] == 1 and first["client_id"]
    with pytest.raises(ChatError) as caught:
        await chat.create_conversation(channel="NOPE")
    assert caught.value.status == 400 and caught.value.problem["invalid-params"]


async def test_a_send_retried_after_an_outage_is_stored_once(
    server: Restartable, chat: ChatClient
) -> None:
    conversation = await chat.create_conversation(channel="API")
    await server.stop()
    sending = asyncio.create_task(chat.send(conversation["id"], "once", client_id="c-1"))
    await asyncio.sleep(0.3)  # the first attempts find nobody listening
    await server.start()
    sent = await asyncio.wait_for(sending, WAIT)
    again = await chat.send(conversation["id"], "once", client_id="c-1")  # a client's own retry
    assert sent["id"] == again["id"]
    assert [m["content"] for m in await chat.list_messages(conversation["id"])] == ["once"]


async def test_subscribe_resumes_across_a_restart_without_gap_or_duplicate(
    server: Restartable, chat: ChatClient
) -> None:
    conversation = await chat.create_conversation(channel="API")
    cid = conversation["id"]
    await chat.send(cid, "before")
    seen: list[int] = []
    done = asyncio.Event()

    async def follow() -> None:
        async for event in chat.subscribe(cid, since=0):
            if event["type"] == "message":
                seen.append(event["message"]["seq"])
                if len(seen) == 6:
                    done.set()
                    return

    follower = asyncio.create_task(follow())
    await chat.send(cid, "live 1")
    while len(seen) < 2:
        await asyncio.sleep(0.02)
    await server.stop()  # the socket is closed with 1001; the subscription reconnects
    await server.start()
    for n in range(4):
        await chat.send(cid, f"after {n}")
    await asyncio.wait_for(done.wait(), WAIT)
    await follower
    assert seen == [1, 2, 3, 4, 5, 6]


async def test_subscribe_without_since_starts_now(chat: ChatClient) -> None:
    cid = (await chat.create_conversation(channel="API"))["id"]
    await chat.send(cid, "old")
    events = chat.subscribe(cid)
    assert (await anext(events))["type"] == "ready"
    await chat.send(cid, "new")
    while (event := await anext(events))["type"] != "message":
        pass
    assert event["message"]["content"] == "new"
    await events.aclose()


async def test_subscribe_stops_on_bad_credentials(server: Restartable, chat: ChatClient) -> None:
    cid = (await chat.create_conversation(channel="API"))["id"]
    async with ChatClient(server.url, "csk_not_a_key") as stranger:
        with pytest.raises(SubscriptionClosed) as caught:
            async for _ in stranger.subscribe(cid):
                pass
    assert caught.value.code == 4401


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_verify_webhook() -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    body = orjson.dumps({"type": "message.created", "data": {"conversation_id": "x"}})
    now = int(time.time())
    headers = {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(now),
               "Webhook-Signature": sign(secret, "msg_1", now, body)}
    assert verify_webhook(headers, body, secret)["type"] == "message.created"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body + b" ", secret)
    stale = {**headers, "Webhook-Timestamp": str(now - 3600),
             "Webhook-Signature": sign(secret, "msg_1", now - 3600, body)}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(stale, body, secret)


async def test_an_agent_streams_with_the_context_manager(chat: ChatClient) -> None:
    cid = (await chat.create_conversation(channel="API"))["id"]
    events = chat.subscribe(cid, since=0)
    assert (await anext(events))["type"] == "ready"  # live before the answer starts
    async with chat.stream(cid, type="AGENT_OUTPUT") as answer:
        assert answer.message["stream"]["state"] == "open"
        assert await answer.append("Hel", "lo") == 2
        assert await answer.append(" there") == 3
    assert answer.message["content"] == "Hello there"
    assert answer.message["stream"]["state"] == "complete"
    deltas = []
    while (event := await anext(events))["type"] != "message.updated":
        if event["type"] == "message.delta":
            deltas.append(event["text"])
    assert "".join(deltas) == "Hello there"
    await events.aclose()
    with pytest.raises(RuntimeError):
        async with chat.stream(cid) as failing:
            await failing.append("half")
            raise RuntimeError("the model failed")
    assert failing.message["stream"] == {"state": "aborted", "next_index": 1, "reason": "error"}
