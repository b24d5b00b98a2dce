"""Webhooks of streamed messages: message.created when the stream opens, message.completed once
when it ends (completed, aborted, or aborted as idle by whichever instance sweeps first), and none
per delta."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from chatserver.app import create_app
from tests.api.test_streams_api import append, open_stream
from tests.conftest import Api
from tests.webhooks.helpers import Receiver, eventually, hooked_conversation, webhook_settings


async def webhooks_until_sentinel(api: Api, cid: str, receiver: Receiver, secret: str) -> list:
    """Post a last message: deliveries of a conversation go out in order, so once it arrives
    every webhook queued before it has too. The payloads before it."""
    await api.post_message(cid, "sentinel")
    await eventually(lambda: any(r.verify(secret)["data"]["message"]["content"] == "sentinel"
                                 for r in receiver.at("/hook")))
    payloads = [r.verify(secret) for r in receiver.at("/hook")]
    assert payloads[-1]["data"]["message"]["content"] == "sentinel"
    return payloads[:-1]


async def test_created_at_open_completed_once_at_the_end(api: Api, receiver: Receiver) -> None:
    cid, secret = await hooked_conversation(api, receiver)
    mid = (await open_stream(api, cid, "Hi"))["id"]
    for i in range(5):
        await append(api, cid, mid, (i, f" {i}"))
    _, done, _ = await api.call("POST", f"/conversations/{cid}/messages/{mid}/complete", {},
                                expect=200)
    created, completed = await webhooks_until_sentinel(api, cid, receiver, secret)
    assert created["type"] == "message.created"
    assert created["data"]["message"]["stream"] == {"state": "open", "next_index": 0}
    assert created["data"]["message"]["content"] == "Hi"
    assert completed["type"] == "message.completed"
    assert completed["data"] == {"conversation_id": cid, "message": done}
    assert done["content"] == "Hi 0 1 2 3 4"


async def test_idle_streams_are_aborted_once_by_any_instance(
    database_url: str, aiohttp_client: Any, make_key: Any, receiver: Receiver,
) -> None:
    settings = webhook_settings(database_url).replace(streams={"idle_timeout": 0.3})
    key = await make_key("agent")
    clients: list[TestClient] = [await aiohttp_client(create_app(settings)) for _ in range(2)]
    a, b = (Api(client, key) for client in clients)
    cid, secret = await hooked_conversation(a, receiver)
    mid = (await open_stream(a, cid))["id"]
    await append(a, cid, mid, (0, "partial"))

    async def aborted() -> Any:
        _, messages, _ = await b.call("GET", f"/conversations/{cid}/messages", expect=200)
        return messages[0]["stream"]["state"] == "aborted" and messages[0]

    message = await eventually(aborted)
    assert message["stream"] == {"state": "aborted", "next_index": 1, "reason": "idle"}
    assert message["content"] == "partial"
    await append(a, cid, mid, (1, "late"), expect=409)
    created, completed = await webhooks_until_sentinel(a, cid, receiver, secret)
    assert created["type"] == "message.created"
    assert completed["type"] == "message.completed"
    assert completed["data"]["message"]["stream"]["reason"] == "idle"
