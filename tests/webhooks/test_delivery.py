"""Webhook delivery end to end: a real receiver on 127.0.0.1, the dispatcher, real Postgres."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from typing import Any

import pytest
from aiohttp import web

from chatserver.app import create_app
from chatserver.appkeys import DB_POOL, SETTINGS
from chatserver.store import webhooks as webhook_store
from chatserver.webhooks.dispatcher import Dispatcher
from chatserver.webhooks.sender import WebhookSender
from tests.conftest import Api
from tests.webhooks.helpers import (
    Receiver,
    eventually,
    hooked_conversation,
    status,
    webhook_settings,
)


async def deliveries(api: Api, conversation_id: str) -> list[dict[str, Any]]:
    _, items, _ = await api.call(
        "GET", f"/conversations/{conversation_id}/webhook-deliveries", expect=200
    )
    return items


async def test_message_webhook_is_signed_per_standard_webhooks(api: Api, receiver: Receiver):
    conversation_id, secret = await hooked_conversation(api, receiver)
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+=*", secret)
    message = await api.post_message(conversation_id, "hello")
    [request] = await receiver.wait_for(1)
    payload = request.verify(secret)
    assert payload["type"] == "message.created"
    assert payload["data"] == {"conversation_id": conversation_id, "message": message}
    assert payload["data"]["message"]["seq"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*Z", payload["timestamp"])
    assert request.headers["Content-Type"] == "application/json"
    [delivery] = await eventually(lambda: _succeeded(api, conversation_id))
    assert delivery["id"] == request.webhook_id
    assert delivery["seq"] == 1
    assert delivery["attempts"][0]["status_code"] == 200
    assert delivery["attempts"][0]["trigger"] == "scheduled"


async def _succeeded(api: Api, conversation_id: str) -> list[dict[str, Any]] | None:
    items = await deliveries(api, conversation_id)
    return items if items and all(d["status"] == "succeeded" for d in items) else None


async def test_failing_twice_then_succeeding_keeps_the_webhook_id(
    api: Api, receiver: Receiver, db: Any
) -> None:
    receiver.then("/hook", status(500), status(503))
    conversation_id, secret = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "retry me")
    requests = await receiver.wait_for(3)
    assert len({r.webhook_id for r in requests}) == 1
    for request in requests:
        request.verify(secret)  # each attempt is signed afresh
    [delivery] = await eventually(lambda: _succeeded(api, conversation_id))
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 503, 200]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert attempts[0]["response_body"] == "status 500"
    assert all(a["duration_ms"] >= 0 for a in attempts)
    assert delivery["next_attempt_at"] is None
    # The success ended the endpoint's failure streak.
    assert await db.fetchval("SELECT failing_since FROM webhook_endpoints "
                             "WHERE conversation_id = $1", uuid.UUID(conversation_id)) is None


async def test_message_update_sends_message_updated(api: Api, receiver: Receiver):
    conversation_id, secret = await hooked_conversation(api, receiver)
    message = await api.post_message(conversation_id, "hi")
    _, updated, _ = await api.call(
        "PATCH", f"/conversations/{conversation_id}/messages/{message['id']}",
        {"status": "PROCESSED"}, expect=200,
    )
    created, changed = await receiver.wait_for(2)
    assert created.verify(secret)["type"] == "message.created"
    payload = changed.verify(secret)
    assert payload["type"] == "message.updated"
    assert payload["data"]["message"] == updated


async def test_no_callback_url_queues_nothing(api: Api, db: Any) -> None:
    conversation_id = await api.create_conversation()
    await api.post_message(conversation_id, "quiet")
    assert await db.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
    status_code, body, _ = await api.call("GET", f"/conversations/{conversation_id}/webhook")
    assert status_code == 409, body


async def test_redirects_are_not_followed(api: Api, receiver: Receiver):
    elsewhere = receiver.url("/elsewhere")
    receiver.then("/hook", *[status(302, Location=elsewhere)] * 10)
    conversation_id, _ = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "go away")

    async def failed() -> Any:
        items = await deliveries(api, conversation_id)
        return items and items[0]["status"] == "failed" and items[0]

    delivery = await eventually(failed)
    # The first attempt and one per schedule entry, each a 302 counted as a failure.
    assert [a["status_code"] for a in delivery["attempts"]] == [302] * 4
    assert receiver.at("/elsewhere") == []


async def test_gone_disables_the_endpoint_until_reenabled(api: Api, receiver: Receiver):
    receiver.then("/hook", status(410))
    conversation_id, secret = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "one")
    await api.post_message(conversation_id, "two")
    await receiver.wait_for(1)
    path = f"/conversations/{conversation_id}/webhook"

    async def disabled() -> Any:
        _, endpoint, _ = await api.call("GET", path, expect=200)
        return not endpoint["enabled"] and endpoint

    endpoint = await eventually(disabled)
    assert "410" in endpoint["disabled_reason"]
    assert endpoint["pending_deliveries"] == 2
    await asyncio.sleep(0.3)  # a few poll intervals: nothing more goes out while disabled
    assert len(receiver.at("/hook")) == 1
    _, enabled, _ = await api.call("POST", path + "/enable", expect=200)
    assert enabled["enabled"] is True
    requests = await receiver.wait_for(3)
    seqs = [r.verify(secret)["data"]["message"]["seq"] for r in requests]
    assert seqs == [1, 1, 2]


async def test_patching_the_callback_url_reenables(api: Api, receiver: Receiver):
    receiver.then("/hook", status(410))
    conversation_id, _ = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "one")
    await receiver.wait_for(1)
    await eventually(lambda: _endpoint_disabled(api, conversation_id))
    _, patched, _ = await api.call(
        "PATCH", f"/conversations/{conversation_id}",
        {"config": {"callback_url": receiver.url("/new")}}, expect=200,
    )
    assert "webhook_secret" not in patched  # the endpoint and its secret already exist
    [request] = await receiver.wait_for(1, "/new")
    assert request.json["data"]["message"]["content"] == "one"


async def _endpoint_disabled(api: Api, conversation_id: str) -> bool:
    _, endpoint, _ = await api.call("GET", f"/conversations/{conversation_id}/webhook")
    return endpoint["enabled"] is False


async def test_order_holds_under_concurrent_posts(api: Api, receiver: Receiver):
    # Every third request fails once, so retries are interleaved with the queue.
    receiver.then("/hook", *[status(500) if i % 3 == 0 else status(200) for i in range(40)])
    conversation_id, secret = await hooked_conversation(api, receiver)
    await asyncio.gather(*(api.post_message(conversation_id, f"m{i}") for i in range(25)))
    await eventually(lambda: _succeeded_count(api, conversation_id, 25))
    seqs = [r.verify(secret)["data"]["message"]["seq"] for r in receiver.at("/hook")]
    # Arrival order: never ahead of an undelivered seq; a retry repeats the same seq.
    assert seqs == sorted(seqs)
    assert sorted(set(seqs)) == list(range(1, 26))


async def _succeeded_count(api: Api, conversation_id: str, count: int) -> bool:
    _, items, _ = await api.call(
        "GET", f"/conversations/{conversation_id}/webhook-deliveries?limit=100", expect=200
    )
    return sum(d["status"] == "succeeded" for d in items) == count


async def test_response_body_is_truncated(api: Api, receiver: Receiver):
    receiver.then("/hook", lambda _r: web.Response(status=500, text="x" * 30_000))
    conversation_id, _ = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "big answer")
    [delivery] = await eventually(lambda: _succeeded(api, conversation_id))
    assert len(delivery["attempts"][0]["response_body"]) == 20_480


async def test_endpoint_failing_past_the_window_is_disabled(
    database_url: str, aiohttp_client: Any, make_key: Any, receiver: Receiver
):
    app = create_app(webhook_settings(database_url, disable_after=0.0))
    api = Api(await aiohttp_client(app), await make_key("admin"))
    receiver.then("/hook", status(500))
    conversation_id, _ = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "fails")
    await eventually(lambda: _endpoint_disabled(api, conversation_id))
    _, endpoint, _ = await api.call("GET", f"/conversations/{conversation_id}/webhook")
    assert "failing" in endpoint["disabled_reason"]
    assert endpoint["pending_deliveries"] == 1
    await api.call("POST", f"/conversations/{conversation_id}/webhook/enable", expect=200)
    await eventually(lambda: _succeeded(api, conversation_id))


async def test_killed_app_delivers_after_restart(
    database_url: str, aiohttp_client: Any, make_key: Any, receiver: Receiver
):
    # The first app has no dispatcher: stopping it right after the commit is a kill before
    # delivery. The outbox row was committed with the message, so the next app delivers it.
    first = await aiohttp_client(create_app(webhook_settings(database_url, run_in_server=False)))
    key = await make_key("admin")
    api = Api(first, key)
    conversation_id, secret = await hooked_conversation(api, receiver)
    message = await api.post_message(conversation_id, "survives")
    await first.close()
    assert receiver.requests == []
    second = await aiohttp_client(create_app(webhook_settings(database_url)))
    [request] = await receiver.wait_for(1)
    assert request.verify(secret)["data"]["message"] == message
    await second.close()


@pytest.mark.parametrize("ordering", ["strict", "best_effort"])
async def test_two_dispatchers_never_send_one_claim_twice(
    database_url: str, aiohttp_client: Any, make_key: Any, receiver: Receiver, ordering: str
):
    settings = webhook_settings(database_url, run_in_server=False, ordering=ordering)
    client = await aiohttp_client(create_app(settings))
    api = Api(client, await make_key("admin"))
    conversations = [(await hooked_conversation(api, receiver))[0] for _ in range(6)]
    await asyncio.gather(*(
        api.post_message(c, f"m{i}") for c in conversations for i in range(8)
    ))
    pool = client.app[DB_POOL]
    senders = [WebhookSender(settings.webhooks) for _ in range(2)]
    for sender in senders:
        await sender.start()
    try:
        dispatchers = [Dispatcher(pool, settings.webhooks, s, burst=True) for s in senders]
        await asyncio.wait_for(asyncio.gather(*(d.main() for d in dispatchers)), 60)
    finally:
        for sender in senders:
            await sender.close()
    ids = [r.webhook_id for r in receiver.requests]
    assert len(ids) == 48
    assert len(set(ids)) == 48
    if ordering == "strict":
        for conversation_id in conversations:
            seqs = [r.json["data"]["message"]["seq"] for r in receiver.requests
                    if r.json["data"]["conversation_id"] == conversation_id]
            assert seqs == list(range(1, 9))
    assert client.app[SETTINGS].webhooks.run_in_server is False


async def test_chatserver_worker_command_delivers(
    database_url: str, aiohttp_client: Any, make_key: Any, receiver: Receiver, tmp_path: Any
):
    client = await aiohttp_client(create_app(webhook_settings(database_url, run_in_server=False)))
    api = Api(client, await make_key("admin"))
    conversation_id, secret = await hooked_conversation(api, receiver)
    message = await api.post_message(conversation_id, "from the worker")
    env = {
        **os.environ,
        "CHATSERVER_DATABASE_URL": database_url,
        "CHATSERVER_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatserver", "worker", cwd=tmp_path, env=env,
    )
    try:
        [request] = await receiver.wait_for(1)
        assert request.verify(secret)["data"]["message"] == message
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0


async def test_a_claim_left_by_a_dead_dispatcher_expires(
    database_url: str, aiohttp_client: Any, make_key: Any, receiver: Receiver, db: Any
):
    first = await aiohttp_client(create_app(webhook_settings(database_url, run_in_server=False)))
    api = Api(first, await make_key("admin"))
    conversation_id, _ = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "claimed, then the claimer died")
    async with db.transaction():
        [job], _ = await webhook_store.claim_heads(db, 10, "dead-dispatcher", 0.5, {}, 10)
    await first.close()
    second = await aiohttp_client(create_app(webhook_settings(database_url)))
    [request] = await receiver.wait_for(1)
    assert request.webhook_id == job["id"].hex
    await eventually(lambda: db.fetchval(
        "SELECT status = 'succeeded' AND locked_by IS NULL FROM webhook_deliveries"))
    await second.close()


async def test_a_slow_endpoint_times_out_and_is_retried(
    database_url: str, aiohttp_client: Any, make_key: Any, receiver: Receiver
):
    async def slow(_request: Any) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(text="too late")

    receiver.then("/hook", slow)
    client = await aiohttp_client(create_app(webhook_settings(database_url, timeout=0.3)))
    api = Api(client, await make_key("admin"))
    conversation_id, _ = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "hurry")
    [delivery] = await eventually(lambda: _succeeded(api, conversation_id))
    first, second = delivery["attempts"]
    assert (first["status_code"], first["error"]) == (0, "timed out")
    assert second["status_code"] == 200


async def test_an_outcome_is_written_only_while_the_claim_holds(
    database_url: str, aiohttp_client: Any, make_key: Any, receiver: Receiver, db: Any
):
    """The outcome and its attempt are one statement: a dispatcher whose claim was taken over
    (its lease ran out, another claimed the delivery) writes neither."""
    app = await aiohttp_client(create_app(webhook_settings(database_url, run_in_server=False)))
    api = Api(app, await make_key("admin"))
    conversation_id, _ = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "claimed twice")
    async with db.transaction():
        [job], _ = await webhook_store.claim_heads(db, 10, "late", 30.0, {}, 10)
    await db.execute("UPDATE webhook_deliveries SET locked_by = 'other'")  # taken over
    outcome = ("succeeded", 0.0, False, 200, "", None, 5)
    assert not await webhook_store.finish_scheduled(db, job["id"], "late", *outcome)
    assert await db.fetchval("SELECT count(*) FROM webhook_attempts") == 0
    assert await db.fetchval("SELECT status FROM webhook_deliveries") == "pending"
    assert await webhook_store.finish_scheduled(db, job["id"], "other", *outcome)
    assert await db.fetchrow(
        "SELECT status, attempt_count, locked_by FROM webhook_deliveries") == (
        "succeeded", 1, None)
    assert await db.fetchval("SELECT attempt FROM webhook_attempts") == 1
    await app.close()
