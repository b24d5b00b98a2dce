"""Webhooks and participants: every message payload carries its author; joins and leaves are
events only when the conversation's config.participant_events is true."""

from __future__ import annotations

from tests.auth.test_tokens import mint
from tests.conftest import Api
from tests.webhooks.helpers import Receiver, hooked_conversation


async def test_message_payloads_carry_the_author(api: Api, receiver: Receiver) -> None:
    cid, secret = await hooked_conversation(api, receiver)
    browser = Api(api.client, await mint(api, cid, "alice"))
    await browser.call("POST", f"/conversations/{cid}/messages", {"content": "hi"}, expect=201)
    await api.post_message(cid, "from the backend")
    requests = await receiver.wait_for(2)
    authors = [r.verify(secret)["data"]["message"]["author"] for r in requests]
    assert authors == [{"id": "alice", "kind": "user", "name": "alice"},
                       {"id": "admin", "kind": "integration", "name": "admin"}]


async def test_participant_events_only_when_enabled(api: Api, receiver: Receiver) -> None:
    quiet, _ = await hooked_conversation(api, receiver, "/quiet")
    await api.call("PUT", f"/conversations/{quiet}/participants/bob", {}, expect=201)
    await api.post_message(quiet, "after bob joined")
    [only] = await receiver.wait_for(1, "/quiet")
    assert only.json["type"] == "message.created"

    _, created, _ = await api.call("POST", "/conversations", {"channel": "API", "config": {
        "callback_url": receiver.url("/loud"), "participant_events": True}}, expect=201)
    cid, secret = created["id"], created["webhook_secret"]
    await api.call("PUT", f"/conversations/{cid}/participants/bob", {"name": "Bob"}, expect=201)
    await mint(api, cid, "carol")
    await api.call("DELETE", f"/conversations/{cid}/participants/bob", expect=204)
    requests = await receiver.wait_for(3, "/loud")
    events = [r.verify(secret) for r in requests]
    assert [(e["type"], e["data"]["participant"]["id"]) for e in events] == [
        ("participant.joined", "bob"), ("participant.joined", "carol"),
        ("participant.left", "bob")]
    assert events[0]["data"]["conversation_id"] == cid
    assert events[0]["data"]["participant"]["name"] == "Bob"
    await api.call("PATCH", f"/conversations/{cid}", {"config": {"participant_events": "yes"}},
                   expect=400)
