"""Websocket limits and policing: frame rate, JSON depth, message size, socket caps, Origin,
and sockets closed when their key is revoked (`chatserver keys revoke`) or their token expires."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

from chatserver.app import create_app
from chatserver.appkeys import TOKENS
from chatserver.config import Settings
from tests.conftest import Api
from tests.localhost import REPO
from tests.realtime.helpers import (
    WAIT,
    Watcher,
    closed_with,
    connect,
    frame_of,
    next_frame,
    ready,
    send,
    watch,
)


async def app_api(settings: Settings, aiohttp_client: Any, make_key: Any, **sections: Any) -> Api:
    client = await aiohttp_client(create_app(settings.replace(**sections)))
    return Api(client, await make_key("admin"))


async def test_deep_json_and_large_content_over_the_socket_are_error_frames(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    api = await app_api(settings, aiohttp_client, make_key, server={"max_json_depth": 5},
                        messages={"max_content_bytes": 10})
    cid = await api.create_conversation()
    ws = await connect(api.client, cid, api.key)
    await ready(ws)
    nested: Any = 1
    for _ in range(10):
        nested = {"a": nested}
    await send(ws, type="message", content="x", metadata=nested, client_id="deep")
    error = await frame_of(ws, "error")
    assert error["code"] == "invalid"  # the frame is refused whole, before its client_id is read
    assert any("nested deeper than 5" in p["reason"] for p in error["invalid_params"])
    await send(ws, type="message", content="é" * 6, client_id="big")  # 12 bytes of UTF-8
    error = await frame_of(ws, "error")
    assert error["client_id"] == "big"
    assert error["invalid_params"] == [{"name": "content", "reason": "must be at most 10 bytes"}]
    await send(ws, type="message", content="fits", client_id="ok")
    assert (await frame_of(ws, "ack"))["client_id"] == "ok"
    _, history, _ = await api.call("GET", f"/conversations/{cid}/messages", expect=200)
    assert [m["client_id"] for m in history] == ["ok"]
    await ws.close()


async def test_sockets_per_conversation_are_capped_with_4429(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    api = await app_api(settings, aiohttp_client, make_key,
                        limits={"max_sockets_per_conversation": 2})
    cid, other = await api.create_conversation(), await api.create_conversation()
    first, second = await watch(api.client, cid, api.key), await watch(api.client, cid, api.key)
    third = await connect(api.client, cid, api.key)
    assert await closed_with(third) == 4429
    elsewhere = await watch(api.client, other, api.key)
    await first.close()
    # The closed socket's place is free again (the server counts it out as it closes).
    again = await asyncio.wait_for(admitted(api, cid), WAIT)
    posted = await api.post_message(cid, "to both")
    await asyncio.gather(second.has_seq(posted["seq"]), again.has_seq(posted["seq"]))
    await asyncio.gather(second.close(), again.close(), elsewhere.close())


async def admitted(api: Api, cid: str) -> Watcher:
    """Connect until the server admits the socket (it may not have counted a closed one out yet)."""
    while True:
        ws = await connect(api.client, cid, api.key)
        first = await next_frame(ws)  # no history here: `ready` comes first, or the close
        if first is not None:
            assert first["type"] == "ready", first
            return Watcher(ws)
        assert ws.close_code == 4429
        await asyncio.sleep(0.05)


async def test_sockets_per_instance_are_capped_with_1013(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    api = await app_api(settings, aiohttp_client, make_key, limits={"max_sockets_per_instance": 2})
    cids = [await api.create_conversation() for _ in range(3)]
    one, two = await watch(api.client, cids[0], api.key), await watch(api.client, cids[1], api.key)
    refused = await connect(api.client, cids[2], api.key)
    assert await closed_with(refused) == 1013
    metrics = await (await api.client.get("/metrics")).text()
    assert "chatserver_sockets_open 2.0" in metrics
    await asyncio.gather(one.close(), two.close())


async def test_origin_check(settings: Settings, aiohttp_client: Any, make_key: Any) -> None:
    api = await app_api(settings, aiohttp_client, make_key,
                        realtime={"allowed_origins": ("https://app.example.com",)})
    cid = await api.create_conversation()
    evil = await connect(api.client, cid, api.key, origin="https://evil.example")
    assert await closed_with(evil) == 4403
    for origin in ("https://app.example.com", None):  # a server-side client sends no Origin
        ws = await connect(api.client, cid, api.key, origin=origin)
        await ready(ws)
        await ws.close()


async def test_any_origin_by_default(api: Api) -> None:
    cid = await api.create_conversation()
    ws = await connect(api.client, cid, api.key, origin="https://anywhere.example")
    await ready(ws)
    await ws.close()


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """The real `chatserver` command, without blocking the event loop the server runs on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatserver", *args, env={**os.environ, **env}, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_revoking_a_key_closes_its_sockets(
    settings: Settings, aiohttp_client: Any, make_key: Any, database_url: str
) -> None:
    api = await app_api(settings, aiohttp_client, make_key, realtime={"heartbeat": 1.0})
    env = {"CHATSERVER_DATABASE_URL": database_url}
    code, doomed_key, err = await run_cli("keys", "create", "--name", "doomed", env=env)
    assert code == 0, err
    doomed_key = doomed_key.strip()
    key_id = err.split("id=")[1].split()[0]
    cid = await api.create_conversation()
    doomed = await watch(api.client, cid, doomed_key)
    steady = await watch(api.client, cid, api.key)
    code, _, err = await run_cli("keys", "revoke", key_id, env=env)
    assert code == 0, err
    assert await doomed.closed() == 4401
    posted = await api.post_message(cid, "after the revocation")
    await steady.has_seq(posted["seq"])
    await steady.close()


async def test_an_expired_token_closes_its_socket(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    api = await app_api(settings, aiohttp_client, make_key, realtime={"heartbeat": 1.0})
    cid = await api.create_conversation()
    token, _ = api.client.server.app[TOKENS].issue(uuid.UUID(hex=cid), "alice", None, ttl=2)
    ws = await api.client.ws_connect(f"/ws/conversations/{cid}?token={token}")
    await ready(ws)
    assert await closed_with(ws) == 4401
