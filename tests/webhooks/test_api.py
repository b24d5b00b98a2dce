"""The webhook API: secrets (once, rotation), test events, redelivery, the paginated log."""

from __future__ import annotations

from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import Api, next_link
from tests.webhooks.helpers import (
    Receiver,
    eventually,
    hooked_conversation,
    status,
    webhook_settings,
)


async def test_secret_is_shown_once_at_create(api: Api, receiver: Receiver) -> None:
    _, created, _ = await api.call(
        "POST", "/conversations",
        {"channel": "API", "config": {"callback_url": receiver.url()}}, expect=201,
    )
    assert set(created) == {"id", "webhook_secret"}
    _, conversation, _ = await api.call("GET", f"/conversations/{created['id']}", expect=200)
    assert "webhook_secret" not in conversation
    assert created["webhook_secret"] not in str(conversation)
    _, plain, _ = await api.call("POST", "/conversations", {"channel": "API"}, expect=201)
    assert set(plain) == {"id"}


async def test_patch_that_first_sets_a_callback_url_returns_the_secret(
    api: Api, receiver: Receiver
) -> None:
    conversation_id = await api.create_conversation()
    path = f"/conversations/{conversation_id}"
    _, patched, _ = await api.call(
        "PATCH", path, {"config": {"callback_url": receiver.url()}}, expect=200
    )
    secret = patched["webhook_secret"]
    _, again, _ = await api.call(
        "PATCH", path, {"config": {"callback_url": receiver.url("/other")}}, expect=200
    )
    assert "webhook_secret" not in again
    await api.post_message(conversation_id, "to other")
    [request] = await receiver.wait_for(1, "/other")
    request.verify(secret)
    # Removing the callback_url stops queueing; the conversation keeps working.
    await api.call("PATCH", path, {"config": {"callback_url": None}}, expect=200)
    await api.post_message(conversation_id, "nowhere")
    _, items, _ = await api.call("GET", path + "/webhook-deliveries", expect=200)
    assert len(items) == 1


async def test_rotation_signs_with_both_secrets_during_the_grace_period(
    api: Api, receiver: Receiver
) -> None:
    conversation_id, old = await hooked_conversation(api, receiver)
    _, rotated, _ = await api.call(
        "POST", f"/conversations/{conversation_id}/webhook-secret/rotate", expect=200
    )
    new = rotated["webhook_secret"]
    assert new != old and new.startswith("whsec_")
    assert rotated["previous_secret_expires_at"]
    await api.post_message(conversation_id, "both")
    [request] = await receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert request.verify(new) == request.verify(old)


async def test_rotation_without_grace_signs_with_the_new_secret_only(
    database_url: str, aiohttp_client: Any, make_key: Any, receiver: Receiver
) -> None:
    from chatserver.app import create_app

    app = create_app(webhook_settings(database_url, secret_grace_period=0.0))
    api = Api(await aiohttp_client(app), await make_key("admin"))
    conversation_id, old = await hooked_conversation(api, receiver)
    _, rotated, _ = await api.call(
        "POST", f"/conversations/{conversation_id}/webhook-secret/rotate", expect=200
    )
    await api.post_message(conversation_id, "new only")
    [request] = await receiver.wait_for(1)
    request.verify(rotated["webhook_secret"])
    with pytest.raises(WebhookVerificationError):
        request.verify(old)


async def webhook_test(api: Api, receiver: Receiver) -> tuple[str, str, Any]:
    """Hook a conversation to the receiver and call webhook-test: (id, secret, outcome)."""
    conversation_id, secret = await hooked_conversation(api, receiver)
    _, outcome, _ = await api.call(
        "POST", f"/conversations/{conversation_id}/webhook-test", expect=200
    )
    return conversation_id, secret, outcome


async def test_webhook_test_sends_a_signed_event_and_reports(api: Api, receiver: Receiver):
    conversation_id, secret, outcome = await webhook_test(api, receiver)
    assert outcome["success"] is True
    assert outcome["event_type"] == "webhook.test"
    assert outcome["attempts"][0]["status_code"] == 200
    assert outcome["attempts"][0]["trigger"] == "manual"
    [request] = receiver.at("/hook")
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"] == {"conversation_id": conversation_id}
    assert request.webhook_id == outcome["id"]


async def test_webhook_test_reports_a_failure(api: Api, receiver: Receiver) -> None:
    receiver.then("/hook", status(503))
    _, _, outcome = await webhook_test(api, receiver)
    assert outcome["success"] is False
    assert outcome["status"] == "failed"
    assert outcome["attempts"][0]["status_code"] == 503


async def test_redeliver_sends_again_now_with_the_same_id(api: Api, receiver: Receiver):
    conversation_id, secret = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "again")
    [first] = await receiver.wait_for(1)
    path = f"/conversations/{conversation_id}/webhook-deliveries"
    await eventually(lambda: _all_succeeded(api, path))
    _, delivery, _ = await api.call(
        "POST", f"{path}/{first.webhook_id}/redeliver", expect=200
    )
    assert [a["trigger"] for a in delivery["attempts"]] == ["scheduled", "manual"]
    assert delivery["attempts"][1]["attempt"] == 2
    first_again, second = receiver.at("/hook")
    assert second.webhook_id == first.webhook_id
    assert second.verify(secret) == first.verify(secret)


async def _all_succeeded(api: Api, path: str) -> bool:
    _, items, _ = await api.call("GET", path, expect=200)
    return bool(items) and all(d["status"] == "succeeded" for d in items)


async def test_deliveries_are_paginated_newest_first(api: Api, receiver: Receiver) -> None:
    conversation_id, _ = await hooked_conversation(api, receiver)
    for i in range(5):
        await api.post_message(conversation_id, f"m{i}")
    path = f"/conversations/{conversation_id}/webhook-deliveries?limit=2"
    seqs: list[int] = []
    url: str | None = path
    while url:
        _, items, headers = await api.call("GET", url, expect=200)
        seqs += [d["seq"] for d in items]
        url = next_link(headers)
    assert seqs == [5, 4, 3, 2, 1]


async def test_webhook_routes_404_for_another_team(
    api: Api, api_for: Any, receiver: Receiver
) -> None:
    conversation_id, _ = await hooked_conversation(api, receiver)
    other = await api_for(7)
    base = f"/conversations/{conversation_id}"
    for method, path in [
        ("GET", "/webhook"), ("POST", "/webhook/enable"), ("POST", "/webhook-secret/rotate"),
        ("GET", "/webhook-deliveries"), ("POST", "/webhook-test"),
        ("POST", f"/webhook-deliveries/{'0' * 32}/redeliver"),
    ]:
        status_code, body, _ = await other.call(method, base + path)
        assert status_code == 404, (path, body)


async def test_bad_ids_and_unknown_deliveries(api: Api, receiver: Receiver) -> None:
    conversation_id, _ = await hooked_conversation(api, receiver)
    base = f"/conversations/{conversation_id}/webhook-deliveries"
    status_code, body, _ = await api.call("POST", f"{base}/nope/redeliver")
    assert status_code == 400 and body["invalid-params"][0]["name"] == "delivery_id"
    status_code, _, _ = await api.call("POST", f"{base}/{'0' * 32}/redeliver")
    assert status_code == 404
    status_code, body, _ = await api.call("GET", f"{base}?limit=0")
    assert status_code == 400 and body["invalid-params"][0]["name"] == "limit"
