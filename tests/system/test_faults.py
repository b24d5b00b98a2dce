"""Fast fault cases: a real Postgres stopped and started under a running app, a dispatcher closed
with a send in flight, and the 503 in the OpenAPI document. The long, multi-process scenarios are
in chaos/ (run by tests/system/test_chaos.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web

from chaos.processes import Postgres
from chatserver.api.routes import ROUTES
from chatserver.app import create_app
from chatserver.appkeys import DB_POOL
from chatserver.auth.keys import create_api_key
from chatserver.config import DatabaseSettings, Settings
from chatserver.db.bootstrap import run_migrations
from chatserver.db.dsn import with_database
from chatserver.db.pool import create_pool
from chatserver.openapi.document import build_document
from chatserver.openapi.operations import OPERATIONS
from chatserver.problems import unavailable
from chatserver.realtime.inbound import error_frame
from chatserver.webhooks.dispatcher import Dispatcher
from chatserver.webhooks.sender import WebhookSender
from tests.conftest import Api
from tests.realtime.helpers import WAIT, Watcher, closed_with, connect, send, watch
from tests.webhooks.helpers import (
    Receiver,
    eventually,
    hooked_conversation,
    start_receiver,
    webhook_settings,
)


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A Postgres of this module's own, which its tests stop and start."""
    postgres = Postgres(tmp_path_factory.mktemp("faults-pg") / "pgdata")
    yield postgres
    postgres.remove()


@pytest.fixture
async def outage_url(own_postgres: Postgres) -> AsyncIterator[str]:
    name = f"faults_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(own_postgres.admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = with_database(own_postgres.admin_url, name)
    await run_migrations(url, partitions=0)
    yield url


@pytest.fixture
async def outage_api(outage_url: str, aiohttp_client: Any) -> Api:
    settings = Settings().replace(database={"url": outage_url, "pool_min_size": 1},
                                  realtime={"reconcile_interval": 0.2, "gap_wait": 0.1})
    conn = await asyncpg.connect(outage_url)
    try:
        key, _ = await create_api_key(conn, "admin", None)
    finally:
        await conn.close()
    return Api(await aiohttp_client(create_app(settings)), key)


async def test_postgres_outage_is_503_with_retry_after_then_recovers(
    outage_api: Api, own_postgres: Postgres
) -> None:
    api = outage_api
    cid = await api.create_conversation()
    await api.post_message(cid, "before", client_id="before")
    watcher = await watch(api.client, cid, api.key)
    publisher = await watch(api.client, cid, api.key)
    await asyncio.to_thread(own_postgres.stop)
    try:
        await assert_unavailable(api, cid)
        await send(publisher.ws, type="message", content="socket", client_id="socket")
        await publisher.until(lambda: first_error(publisher) is not None)
        error = first_error(publisher)
        assert error is not None
        assert error["code"] == "unavailable" and error["retry_after"] == 5, error
        refused = await connect(api.client, cid, api.key)
        assert await closed_with(refused) == 1013
    finally:
        await asyncio.to_thread(own_postgres.start)
    # The same app, no restart: the pool reconnects on its own.
    await api.post_message(cid, "during", client_id="during")
    await send(publisher.ws, type="message", content="socket", client_id="socket")
    ack = await asyncio.wait_for(publisher.acks.get(), WAIT)
    assert ack["client_id"] == "socket"
    await watcher.has_seq(3)
    assert watcher.seqs == [2, 3]
    _, ready, _ = await api.call("GET", "/readyz", expect=200)
    assert ready["checks"]["database"] == "ok"
    _, page, _ = await api.call("GET", f"/conversations/{cid}/messages?order=asc", expect=200)
    assert [m["client_id"] for m in page] == ["before", "during", "socket"]
    assert [m["seq"] for m in page] == [1, 2, 3]
    await watcher.close()
    await publisher.close()


async def assert_unavailable(api: Api, cid: str) -> None:
    """Every database-backed call answers 503 problem+json with Retry-After; /readyz says why."""
    for method, path, body in [
        ("POST", f"/conversations/{cid}/messages", {"content": "during", "client_id": "during"}),
        ("GET", f"/conversations/{cid}/messages", None),
        ("GET", f"/conversations/{cid}", None),
        ("POST", "/conversations", {"channel": "API"}),
    ]:
        resp = await api.client.request(method, path, json=body, headers=api.headers())
        problem = await resp.json(content_type=None)
        assert resp.status == 503, (method, path, resp.status, problem)
        assert resp.content_type == "application/problem+json"
        assert resp.headers["Retry-After"] == "5"
        assert problem["code"] == "unavailable" and problem["status"] == 503
    status, ready, _ = await api.call("GET", "/readyz")
    assert status == 503
    assert ready["checks"]["database"].startswith("unavailable")


def first_error(watcher: Watcher) -> dict[str, Any] | None:
    return next((f for f in watcher.frames if f["type"] == "error"), None)


async def test_no_half_written_message_after_the_outage(
    outage_api: Api, own_postgres: Postgres, outage_url: str
) -> None:
    # Posts racing the stop either commit whole (row, seq and last_seq) or not at all.
    api = outage_api
    cid = await api.create_conversation()

    async def post(n: int) -> int:
        resp = await api.client.post(f"/conversations/{cid}/messages", headers=api.headers(),
                                     json={"content": f"m{n}", "client_id": f"m{n}"})
        return resp.status

    posting = [asyncio.create_task(post(n)) for n in range(40)]
    await asyncio.sleep(0.01)
    await asyncio.to_thread(own_postgres.stop)
    statuses = await asyncio.gather(*posting)
    await asyncio.to_thread(own_postgres.start)
    assert set(statuses) <= {201, 503}, statuses
    conn = await asyncpg.connect(outage_url)
    try:
        seqs = [r["seq"] for r in await conn.fetch(
            "SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq",
            uuid.UUID(hex=cid))]
        last_seq = await conn.fetchval("SELECT last_seq FROM conversations WHERE id = $1",
                                       uuid.UUID(hex=cid))
    finally:
        await conn.close()
    assert seqs == list(range(1, last_seq + 1))
    assert statuses.count(201) <= last_seq


async def test_closed_dispatcher_releases_the_claim_of_a_cancelled_send(
    database_url: str, aiohttp_client: Any, make_key: Any, aiohttp_server: Any, db: Any
) -> None:
    receiver: Receiver = await start_receiver(aiohttp_server)
    hanging = asyncio.Event()

    async def hang(_request: Any) -> web.Response:
        hanging.set()
        await asyncio.sleep(WAIT)
        return web.Response(text="too late")

    receiver.then("/hook", hang)
    settings = webhook_settings(database_url, run_in_server=False)
    client = await aiohttp_client(create_app(settings))
    api = Api(client, await make_key("admin"))
    conversation_id, _ = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "claimed when the instance stops")
    sender = WebhookSender(settings.webhooks)
    await sender.start()
    first = Dispatcher(client.app[DB_POOL], settings.webhooks, sender, name="stopping")
    running = asyncio.create_task(first.main())
    await asyncio.wait_for(hanging.wait(), WAIT)
    assert await db.fetchval("SELECT locked_by FROM webhook_deliveries") == "stopping"
    await first.close(grace=0)
    await asyncio.wait_for(running, WAIT)
    row = await db.fetchrow("SELECT status, locked_by, locked_until FROM webhook_deliveries")
    assert dict(row) == {"status": "pending", "locked_by": None, "locked_until": None}
    # Another dispatcher sends it now, not after the lease.
    second = Dispatcher(client.app[DB_POOL], settings.webhooks, sender, burst=True)
    await asyncio.wait_for(second.main(), WAIT)
    await eventually(lambda: db.fetchval(
        "SELECT status = 'succeeded' FROM webhook_deliveries"))
    assert len(receiver.at("/hook")) == 2
    await sender.close()


def test_every_authenticated_operation_documents_503() -> None:
    document = build_document(ROUTES)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            name = operation["operationId"]
            if OPERATIONS[name].public:
                continue
            unavailable = operation["responses"].get("503")
            assert unavailable is not None, (method, path)
            assert "Retry-After" in unavailable["headers"], (method, path)


def test_socket_error_frame_names_unavailable() -> None:
    frame = orjson.loads(error_frame(unavailable(7), "c1"))
    assert frame == {"type": "error", "code": "unavailable", "client_id": "c1", "retry_after": 7,
                     "detail": "the database is unavailable; retry later"}


async def test_acknowledged_means_durably_committed(client: Any) -> None:
    # Acks and 201s are sent after COMMIT returns, and by default the server never relaxes
    # durability: its connections run with synchronous_commit = on (the WAL is flushed first).
    async with client.app[DB_POOL].acquire() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"


async def test_relaxed_durability_is_an_explicit_setting(database_url: str) -> None:
    settings = DatabaseSettings(pool_min_size=1, pool_max_size=1, synchronous_commit="off",
                                plan_cache_mode="auto")
    pool = await create_pool(database_url, settings)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
            assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
    finally:
        await pool.close()


async def test_an_outcome_is_recorded_once_postgres_is_back(
    outage_url: str, own_postgres: Postgres, aiohttp_server: Any, aiohttp_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The endpoint answers while Postgres is down: the dispatcher keeps the outcome and records it
    # when Postgres is back (its claim still holds), instead of sending the webhook again later.
    receiver: Receiver = await start_receiver(aiohttp_server)
    arrived, answer = asyncio.Event(), asyncio.Event()

    async def held(_request: Any) -> web.Response:
        arrived.set()
        await answer.wait()
        return web.Response(text="ok")

    receiver.then("/hook", held)
    client = await aiohttp_client(create_app(webhook_settings(outage_url)))
    conn = await asyncpg.connect(outage_url)
    try:
        key, _ = await create_api_key(conn, "admin", None)
    finally:
        await conn.close()
    api = Api(client, key)
    conversation_id, _ = await hooked_conversation(api, receiver)
    await api.post_message(conversation_id, "sent during the outage")
    await asyncio.wait_for(arrived.wait(), WAIT)
    await asyncio.to_thread(own_postgres.stop)
    try:
        answer.set()
        await eventually(lambda: "outcome not recorded yet" in caplog.text)
    finally:
        await asyncio.to_thread(own_postgres.start)
    _, deliveries, _ = await eventually(lambda: succeeded(api, conversation_id))
    assert len(receiver.at("/hook")) == 1
    assert deliveries[0]["attempts"][0]["status_code"] == 200


async def succeeded(api: Api, conversation_id: str) -> Any:
    status, deliveries, headers = await api.call(
        "GET", f"/conversations/{conversation_id}/webhook-deliveries")
    if status == 200 and deliveries and deliveries[0]["status"] == "succeeded":
        return status, deliveries, headers
    return None
