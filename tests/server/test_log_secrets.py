"""JSON logs at INFO never carry secrets (API keys, browser tokens, webhook secrets) or message
content, through a flow that touches REST, websockets, webhooks, failures and revocation."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer

from chatserver.app import create_app
from chatserver.server.logs import AccessLogger, JsonFormatter
from chatserver.store import api_keys
from tests.conftest import Api
from tests.logcapture import captured_log
from tests.realtime.helpers import closed_with, frame_of, ready, send
from tests.webhooks.helpers import hooked_conversation, start_receiver, status, webhook_settings

CONTENT = "the-private-words-" + uuid.uuid4().hex
WS_CONTENT = "the-socket-words-" + uuid.uuid4().hex
METADATA = "the-private-metadata-" + uuid.uuid4().hex


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged at INFO and above, as the JSON lines `log_format = "json"` writes."""
    with captured_log(formatter=JsonFormatter()) as out:
        yield out


async def test_no_secret_or_content_at_info(
    captured: io.StringIO, database_url: str, aiohttp_client: Any, aiohttp_server: Any,
    make_key: Any, db: Any,
) -> None:
    receiver = await start_receiver(aiohttp_server)
    receiver.then("/hook", status(500))  # one failed delivery, logged, then retried
    settings = webhook_settings(database_url).replace(realtime={"heartbeat": 1.0})
    # The access log as `chatserver serve` writes it (TestServer would use aiohttp's default).
    server = TestServer(create_app(settings))
    await server.start_server(access_log_class=AccessLogger)
    client = await aiohttp_client(server)
    api = Api(client, await make_key("admin"))
    cid, webhook_secret = await hooked_conversation(api, receiver)
    message = await api.post_message(cid, CONTENT, metadata={"note": METADATA})
    await api.call("PATCH", f"/conversations/{cid}/messages/{message['id']}",
                   {"status": "PROCESSED", "metadata": {"note": METADATA}}, expect=200)
    await api.call("POST", f"/conversations/{cid}/messages", {"content": CONTENT + "x" * 70_000},
                   expect=400)
    _, token, _ = await api.call("POST", f"/conversations/{cid}/tokens", {"user": "alice"},
                                 expect=201)
    ws = await client.ws_connect(f"/ws/conversations/{cid}?token={token['token']}&since=0")
    await ready(ws)
    await send(ws, type="message", content=WS_CONTENT, client_id="c1")
    await frame_of(ws, "ack")
    await ws.close()
    _, rotated, _ = await api.call("POST", f"/conversations/{cid}/webhook-secret/rotate",
                                   expect=200)
    await receiver.wait_for(3)  # the failure, its retry, the update
    doomed_key = await make_key("doomed")
    doomed = await client.ws_connect(f"/ws/conversations/{cid}",
                                     headers={"Authorization": f"Bearer {doomed_key}"})
    await ready(doomed)
    prefix = doomed_key[4:16]
    row = await api_keys.get_key_by_prefix(db, prefix)
    await api_keys.revoke_key(db, row["id"])
    assert await closed_with(doomed) == 4401
    await api.call("GET", "/conversations", headers={"Authorization": f"Bearer {doomed_key}x"},
                   expect=401)

    lines = captured.getvalue().splitlines()
    records = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert any(r.get("path") == f"/conversations/{cid}/messages" for r in records)
    assert any("failed (status 500" in r["msg"] for r in records)
    assert any("revoked or expired" in r["msg"] for r in records)
    text = captured.getvalue()
    for secret in (api.key, doomed_key, token["token"], webhook_secret,
                   rotated["webhook_secret"], CONTENT, WS_CONTENT, METADATA):
        assert secret not in text, f"{secret[:12]}... was logged"
