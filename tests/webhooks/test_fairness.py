"""The dispatcher shares its slots between endpoints: a slow endpoint holds its share, not every
slot, and another endpoint's webhooks go out while the slow one's requests still hang."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from chatserver.config import Settings
from tests.conftest import Api
from tests.webhooks.helpers import Received, Receiver, webhook_settings

CONCURRENCY = 4


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Hanging requests must not time out (and be retried) while the test runs.
    return webhook_settings(database_url, concurrency=CONCURRENCY, timeout=60.0)


async def test_a_hanging_endpoint_leaves_slots_for_the_others(
    api_for: Any, receiver: Receiver
) -> None:
    team: Api = await api_for(3)
    release = asyncio.Event()

    async def hang(_request: Received) -> web.StreamResponse:
        await release.wait()
        return web.Response(text="late")

    receiver.then("/slow", *[hang] * 20)
    _, slow, _ = await team.call("POST", "/webhook-endpoints", {
        "url": receiver.url("/slow"), "event_types": ["conversation.created"]}, expect=201)
    # Ten conversations: ten queues of the slow endpoint, each with a head ready to go.
    for _ in range(10):
        await team.create_conversation()
    await receiver.wait_for(CONCURRENCY // 2, "/slow")  # alone, it holds half the slots
    _, fast, _ = await team.call("POST", "/webhook-endpoints", {
        "url": receiver.url("/fast"), "event_types": ["message.created"]}, expect=201)
    conversation_id = await team.create_conversation()
    for i in range(3):
        await team.post_message(conversation_id, f"m{i}")
    # Before the fix the slow endpoint took every slot and this waited for its requests.
    requests = await receiver.wait_for(3, "/fast")
    assert [r.verify(fast["secret"])["data"]["message"]["content"] for r in requests] == [
        "m0", "m1", "m2"]
    assert not release.is_set()
    assert len(receiver.at("/slow")) <= CONCURRENCY // 2
    release.set()
    await receiver.wait_for(11, "/slow")
    assert {r.verify(slow["secret"])["type"] for r in receiver.at("/slow")} == {
        "conversation.created"}
