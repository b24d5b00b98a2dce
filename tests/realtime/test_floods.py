"""Isolation under floods on the websocket: every frame (pings too) spends the socket's frame
budget, frames over it are dropped unread with at most one `rate_limited` error frame per second,
a flood is closed with 1008, and one team cannot hold every socket of an instance."""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp

from chatserver.config import Settings
from tests.conftest import Api
from tests.realtime.helpers import closed_with, connect, next_frame, ready, send, watch
from tests.realtime.test_guard import app_api

FLOOD_PINGS = 5_000
FLOODER = "127.0.0.2"  # another client address than the test client's


async def rate_limited_count(api: Api) -> str:
    metrics = await (await api.client.get("/metrics")).text()
    line = [x for x in metrics.splitlines()
            if x.startswith('chatserver_rate_limited_total{limit="socket_frames"}')]
    return line[0].split()[-1] if line else "0"


async def test_frames_over_the_rate_are_dropped_unread_with_one_error_frame(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    api = await app_api(settings, aiohttp_client, make_key,
                        limits={"socket_frames_per_second": 0.2, "socket_frame_burst": 2})
    cid = await api.create_conversation()
    ws = await connect(api.client, cid, api.key)
    await ready(ws)
    for n in range(2):
        await send(ws, type="message", content=f"m{n}", client_id=f"c{n}")
    await send(ws, type="message", content="m2", client_id="c2")
    await ws.send_str("{not json")  # dropped before parsing: no `invalid` error frame
    await send(ws, type="typing")
    while await rate_limited_count(api) != "3.0":  # all three over-the-rate frames were read
        pass
    posted = await api.post_message(cid, "over rest")
    frames = []
    while (got := await next_frame(ws)) is not None:
        frames.append(got)
        if got["type"] == "message" and got["message"]["id"] == posted["id"]:
            break
    assert sorted(f["client_id"] for f in frames if f["type"] == "ack") == ["c0", "c1"]
    errors = [f for f in frames if f["type"] == "error"]
    assert len(errors) == 1, errors  # one per second, not one per frame
    assert errors[0]["code"] == "rate_limited" and errors[0]["client_id"] is None
    assert 0 < errors[0]["retry_after"] <= 5
    assert not ws.closed
    _, history, _ = await api.call("GET", f"/conversations/{cid}/messages", expect=200)
    assert sorted(m["client_id"] or "" for m in history) == ["", "c0", "c1"]
    await ws.close()


async def test_a_ping_flood_is_closed_with_1008_and_the_server_still_answers(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    api = await app_api(settings, aiohttp_client, make_key)  # the default limits
    cid = await api.create_conversation()
    quiet = await watch(api.client, cid, api.key)  # from 127.0.0.1
    headers = {"Authorization": f"Bearer {api.key}"}
    socket_url = api.client.make_url(f"/ws/conversations/{cid}")
    elsewhere = aiohttp.TCPConnector(local_addr=(FLOODER, 0))
    async with aiohttp.ClientSession(connector=elsewhere, headers=headers) as flooder:
        flood = await flooder.ws_connect(socket_url)
        await ready(flood)
        with contextlib.suppress(ConnectionError):  # the server may drop it mid-flood
            for _ in range(FLOOD_PINGS):
                await flood.ping()
        assert await closed_with(flood) == 1008
        # The flooding address is refused before authentication for a while, socket and REST...
        assert await closed_with(await flooder.ws_connect(socket_url)) == 4429
        async with flooder.get(api.client.make_url("/conversations")) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    # ...while everyone else is served as before.
    posted = await api.post_message(cid, "still here")
    await quiet.has_seq(posted["seq"])
    assert quiet.close_code is None
    await quiet.close()


async def test_pings_within_the_rate_are_answered(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    api = await app_api(settings, aiohttp_client, make_key)
    cid = await api.create_conversation()
    ws = await connect(api.client, cid, api.key, autoping=False)
    await ready(ws)
    await ws.ping(b"hello")
    while True:
        msg = await ws.receive()
        if msg.type.name == "PONG":
            assert msg.data == b"hello"
            break
        assert msg.type.name == "TEXT", msg
    await ws.close()


async def test_sockets_per_team_are_capped_with_4429(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    api = await app_api(settings, aiohttp_client, make_key, limits={"max_sockets_per_team": 2})
    team1 = Api(api.client, await make_key("team-1", 1))
    team2 = Api(api.client, await make_key("team-2", 2))
    first, second = await team1.create_conversation(), await team1.create_conversation()
    held = [await watch(api.client, first, team1.key), await watch(api.client, second, team1.key)]
    third = await connect(api.client, first, team1.key)
    assert await closed_with(third) == 4429
    # Another team, and admin keys (no team), still get sockets on the same instance.
    other = await watch(api.client, await team2.create_conversation(), team2.key)
    admin = await watch(api.client, first, api.key)
    posted = await team1.post_message(first, "to the held socket")
    await held[0].has_seq(posted["seq"])
    for watcher in (*held, other, admin):
        await watcher.close()
