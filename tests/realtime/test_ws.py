"""The websocket protocol on one instance (in-process bus): auth, replay, live and bad frames."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from chatserver.app import create_app
from chatserver.config import Settings
from tests.conftest import Api
from tests.realtime.helpers import (
    closed_with,
    connect,
    frame_of,
    message_seqs,
    ready,
    send,
)


async def test_live_messages_and_ready(api: Api) -> None:
    cid = await api.create_conversation()
    await api.post_message(cid, "before")
    ws = await connect(api.client, cid, api.key)
    replayed, hello = await ready(ws)
    assert replayed == [] and hello == {"type": "ready", "conversation_id": cid, "last_seq": 1}
    presence = await frame_of(ws, "presence")
    assert presence["members"] == ["admin"]
    posted = await api.post_message(cid, "hello")
    frame = await frame_of(ws, "message")
    assert frame["message"] == posted
    await ws.close()


async def test_replay_since_then_live(api: Api) -> None:
    cid = await api.create_conversation()
    for i in range(5):
        await api.post_message(cid, f"m{i}")
    ws = await connect(api.client, cid, api.key, since=2)
    replayed, hello = await ready(ws)
    assert replayed == [3, 4, 5] and hello["last_seq"] == 5
    await api.post_message(cid, "live")
    assert await message_seqs(ws, 6) == [6]
    await ws.close()


async def test_replay_gives_current_state_and_updates_are_live(api: Api) -> None:
    cid = await api.create_conversation()
    first = await api.post_message(cid, "one")
    await api.call("PATCH", f"/conversations/{cid}/messages/{first['id']}",
                   {"status": "PROCESSED"}, expect=200)
    ws = await connect(api.client, cid, api.key, since=0)
    await ws.receive()  # the replayed message, checked below through the next connection
    await frame_of(ws, "ready")
    await api.call("PATCH", f"/conversations/{cid}/messages/{first['id']}",
                   {"status": "FAILED"}, expect=200)
    updated = await frame_of(ws, "message.updated")
    assert updated["message"]["status"] == "FAILED" and updated["message"]["seq"] == 1
    again = await connect(api.client, cid, api.key, since=0)
    replayed = await frame_of(again, "message")
    assert replayed["message"]["status"] == "FAILED"
    await ws.close()
    await again.close()


async def test_send_over_socket_acks_after_commit_and_is_idempotent(api: Api) -> None:
    cid = await api.create_conversation()
    ws = await connect(api.client, cid, api.key)
    await ready(ws)
    await send(ws, type="message", content="hi", client_id="c1", metadata={"a": 1})
    message = await frame_of(ws, "message")
    ack = await frame_of(ws, "ack")
    assert ack["client_id"] == "c1" and ack["message"] == message["message"]
    assert message["message"]["created_by"] == "admin" and message["message"]["seq"] == 1
    await send(ws, type="message", content="hi", client_id="c1", metadata={"a": 1})
    replayed_ack = await frame_of(ws, "ack")
    assert replayed_ack["message"]["seq"] == 1
    _, history, _ = await api.call("GET", f"/conversations/{cid}/messages", expect=200)
    assert [m["seq"] for m in history] == [1]
    await ws.close()


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        ("not json", "invalid", "body"),
        ("[1, 2]", "invalid", "body"),
        ('{"type": "dance"}', "unknown_type", "type"),
        ('{"type": "message"}', "invalid", "content"),
        ('{"type": "message", "content": "x", "content_type": "IMAGE"}', "invalid", "filename"),
        ('{"type": "message", "content": "x", "bogus": 1}', "invalid", "bogus"),
    ],
)
async def test_bad_frames_get_error_frames_and_socket_stays(
    api: Api, raw: str, code: str, field: str
) -> None:
    cid = await api.create_conversation()
    ws = await connect(api.client, cid, api.key)
    await ready(ws)
    await ws.send_str(raw)
    error = await frame_of(ws, "error")
    assert error["code"] == code
    assert field in [p["name"] for p in error["invalid_params"]]
    await send(ws, type="message", content="still here", client_id="ok")
    assert (await frame_of(ws, "ack"))["client_id"] == "ok"
    await ws.close()


@pytest.mark.parametrize("in_flight", [1, 8])
async def test_pipelined_sends_are_stored_in_the_order_sent(
    settings: Settings, aiohttp_client: Any, make_key: Any, in_flight: int
) -> None:
    app = create_app(settings.replace(limits={"socket_frames_per_second": 0,
                                              "socket_frames_in_flight": in_flight}))
    api = Api(await aiohttp_client(app), await make_key("pipeliner"))
    cid = await api.create_conversation()
    ws = await connect(api.client, cid, api.key)
    await ready(ws)
    count = 120
    # Sent without waiting for acks; a broken frame in the middle gets its error and nothing else.
    for i in range(count):
        await send(ws, type="message", content=f"m{i}", client_id=f"c{i}")
        if i == count // 2:
            await send(ws, type="message", client_id="broken")
    acks: dict[str, int] = {}
    while len(acks) < count:
        got = await frame_of(ws, "ack")
        acks[got["client_id"]] = got["message"]["seq"]
    assert [acks[f"c{i}"] for i in range(count)] == list(range(1, count + 1))
    _, history, _ = await api.call("GET", f"/conversations/{cid}/messages?limit=500", expect=200)
    assert [m["content"] for m in reversed(history)] == [f"m{i}" for i in range(count)]
    await ws.close()


async def test_idempotency_conflict_is_an_error_frame(api: Api) -> None:
    cid = await api.create_conversation()
    ws = await connect(api.client, cid, api.key)
    await ready(ws)
    await send(ws, type="message", content="one", client_id="same")
    await frame_of(ws, "ack")
    await send(ws, type="message", content="two", client_id="same")
    error = await frame_of(ws, "error")
    assert error["code"] == "idempotency_conflict" and error["client_id"] == "same"
    await ws.close()


async def test_binary_frame_closes_1003(api: Api) -> None:
    cid = await api.create_conversation()
    ws = await connect(api.client, cid, api.key)
    await ready(ws)
    await ws.send_bytes(b"\x00\x01")
    assert await closed_with(ws) == 1003


async def test_invalid_utf8_closes_1007(api: Api) -> None:
    cid = await api.create_conversation()
    ws = await connect(api.client, cid, api.key)
    await ready(ws)
    # A text frame whose payload is not UTF-8, written below aiohttp's str API.
    await ws._writer.send_frame(b"\xff\xfe", aiohttp.WSMsgType.TEXT)
    assert await closed_with(ws) == 1007


async def test_oversized_frame_closes_1009(settings: Settings, aiohttp_client: Any,
                                           make_key: Any) -> None:
    from chatserver.app import create_app

    client = await aiohttp_client(create_app(settings.replace(realtime={"max_frame_bytes": 1024})))
    api = Api(client, await make_key("admin"))
    cid = await api.create_conversation()
    ws = await connect(client, cid, api.key)
    await ready(ws)
    await send(ws, type="message", content="x" * 2000)
    assert await closed_with(ws) == 1009


async def test_typing_is_fanned_out_not_stored(api: Api) -> None:
    cid = await api.create_conversation()
    one = await connect(api.client, cid, api.key)
    two = await connect(api.client, cid, api.key)
    await ready(one)
    await ready(two)
    await send(one, type="typing")
    assert (await frame_of(two, "typing"))["user"] == "admin"
    _, history, _ = await api.call("GET", f"/conversations/{cid}/messages", expect=200)
    assert history == []
    await one.close()
    await two.close()


@pytest.mark.parametrize(
    ("key", "conversation", "query", "code"),
    [
        (None, "own", "", 4401),
        ("csk_nonsense", "own", "", 4401),
        ("good", "00000000000000000000000000000000", "", 4404),
        ("good", "not-an-id", "", 4404),
        ("good", "own", "?since=9", 4400),
        ("good", "own", "?since=-1", 4400),
    ],
)
async def test_refusals_close_after_upgrade(
    api: Api, key: str | None, conversation: str, query: str, code: int
) -> None:
    cid = await api.create_conversation()
    target = cid if conversation == "own" else conversation
    headers = {"Authorization": f"Bearer {api.key if key == 'good' else key}"} if key else {}
    ws = await api.client.ws_connect(f"/ws/conversations/{target}{query}", headers=headers)
    assert await closed_with(ws) == code
    assert ws.close_code == code


async def test_other_teams_conversation_is_4404(api: Api, api_for: Any) -> None:
    team1 = await api_for(1)
    team2 = await api_for(2)
    cid = await team1.create_conversation()
    ws = await connect(api.client, cid, team2.key)
    assert await closed_with(ws) == 4404


async def test_shutdown_closes_sockets_with_1001(settings: Settings, make_key: Any) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from chatserver.app import create_app

    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    api = Api(client, await make_key("admin"))
    cid = await api.create_conversation()
    ws = await connect(client, cid, api.key)
    await ready(ws)
    await client.server.close()
    assert await closed_with(ws) == 1001
    await client.close()


async def test_heartbeat_closes_a_dead_socket(settings: Settings, aiohttp_client: Any,
                                              make_key: Any) -> None:
    from chatserver.app import create_app

    client = await aiohttp_client(create_app(settings.replace(realtime={"heartbeat": 1.0})))
    api = Api(client, await make_key("admin"))
    ghost_key = await make_key("ghost")
    cid = await api.create_conversation()
    watcher = await connect(client, cid, api.key)
    await ready(watcher)
    assert (await frame_of(watcher, "presence.join"))["user"] == "admin"
    # autoping off and never reading: this client never answers the server's pings.
    dead = await connect(client, cid, ghost_key, autoping=False)
    joined = await frame_of(watcher, "presence.join")
    assert joined["user"] == "ghost"
    left = await frame_of(watcher, "presence.leave")
    assert left["user"] == "ghost"
    await watcher.close()
    await dead.close()


async def test_slow_consumer_is_cut_off_and_never_slows_others(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    from chatserver.app import create_app
    from chatserver.appkeys import HUB
    from tests.realtime.helpers import watch

    app = create_app(settings.replace(realtime={"send_queue_size": 8}))
    client = await aiohttp_client(app)
    api = Api(client, await make_key("admin"))
    cid = await api.create_conversation()
    fast = await watch(client, cid, api.key)
    slow = await connect(client, cid, api.key)  # not read until it has been cut off
    await ready(slow)
    members = list(app[HUB].rooms[uuid.UUID(hex=cid)].members)
    big = "x" * 60_000
    posted = 0
    # ~60 KB frames: the slow reader's socket buffers fill, then its queue, then it is cut off.
    while not any(m.closing for m in members) and posted < 2000:
        await api.post_message(cid, big)
        posted += 1
    assert any(m.closing for m in members), "the slow socket was never cut off"
    await api.post_message(cid, "after the cut")
    await fast.has_seq(posted + 1)
    assert fast.seqs == list(range(1, posted + 2))
    assert await closed_with(slow) == 4008
    await fast.close()


async def test_a_socket_that_does_not_read_is_cut_off_by_its_byte_budget(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    """The frame count alone (1000 here) would let it hold 1000 large messages; the byte budget
    closes it with 4008 after a few, and the queue it held is released."""
    from chatserver.app import create_app
    from chatserver.appkeys import HUB

    budget = 256 * 1024
    app = create_app(settings.replace(realtime={"send_queue_size": 1000,
                                                "send_queue_bytes": budget}))
    client = await aiohttp_client(app)
    api = Api(client, await make_key("admin"))
    cid = await api.create_conversation()
    slow = await connect(client, cid, api.key)  # never read until it is closed
    await ready(slow)
    [sender] = app[HUB].rooms[uuid.UUID(hex=cid)].members
    posted = 0
    # ~60 KB frames: loopback and the transport take a few MB, then the queue fills its budget.
    while not sender.closing and posted < 400:
        await api.post_message(cid, "x" * 60_000)
        posted += 1
        assert sender.queued_bytes <= budget + 61_000
    assert sender.closing, "the socket that does not read was never cut off"
    assert sender.queue == [] and sender.queued_bytes == 0
    assert await closed_with(slow) == 4008


async def test_readyz_reports_the_in_process_bus(api: Api) -> None:
    _, ready_body, _ = await api.call("GET", "/readyz", expect=200)
    assert ready_body["bus"] == {"state": "ok"}


async def test_socket_under_api_prefix(api: Api) -> None:
    cid = await api.create_conversation()
    ws = await api.client.ws_connect(f"/api/ws/conversations/{cid}",
                                     headers={"Authorization": f"Bearer {api.key}"})
    _, hello = await ready(ws)
    assert hello["last_seq"] == 0
    await ws.close()


async def test_plain_get_on_the_socket_route_is_a_problem(api: Api) -> None:
    cid = await api.create_conversation()
    response = await api.client.get(f"/ws/conversations/{cid}")
    assert response.status == 400
    assert response.content_type == "application/problem+json"
