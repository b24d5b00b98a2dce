"""Bad input on the websocket gets a close code a browser can read or an error frame, never a
dropped connection (1006): credentials that are not UTF-8, `since` that is not ASCII digits,
integers beyond signed 64 bits in a frame."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests import rawhttp
from tests.conftest import Api
from tests.realtime.helpers import connect, frame_of, ready

NOT_ASCII_SINCE = ["²", "①", "٣", "１", "+1", " 1", "1_0", "-1", "99999999999999999999"]


async def close_code(api: Api, target: str, headers: rawhttp.Headers) -> int:
    server = api.client.server
    return await rawhttp.websocket_close_code(server.host, server.port, target.encode(), headers)


@pytest.mark.parametrize("key", [b"csk_\xff\xfe" + b"a" * 40, b"csk_abcdefghijkl\xc3\x28x",
                                 b"\xff"])
async def test_a_credential_that_is_not_utf8_closes_with_4401(api: Api, key: bytes) -> None:
    cid = await api.create_conversation()
    target = f"/ws/conversations/{cid}"
    assert await close_code(api, target, [(b"Authorization", b"Bearer " + key)]) == 4401
    assert await close_code(api, target, [(b"Sec-WebSocket-Protocol", b"bearer." + key)]) == 4401
    assert await close_code(api, f"{target}?token=%FF%FE", []) == 4401


@pytest.mark.parametrize("since", NOT_ASCII_SINCE)
async def test_since_that_is_not_ascii_digits_closes_with_4400(api: Api, since: str) -> None:
    cid = await api.create_conversation()
    await api.post_message(cid, "one")
    headers = [(b"Authorization", f"Bearer {api.key}".encode())]
    assert await close_code(api, f"/ws/conversations/{cid}?since={quote(since)}", headers) == 4400


@pytest.mark.parametrize("number", [2**64, 10**30, -(2**63) - 1, 2**64 - 1, 2**63])
async def test_integers_beyond_64_bits_in_a_frame_are_an_error_frame(
    api: Api, number: int
) -> None:
    cid = await api.create_conversation()
    ws = await connect(api.client, cid, api.key)
    await ready(ws)
    await ws.send_str(f'{{"type": "message", "content": "x", "client_id": "c1", '
                      f'"metadata": {{"n": {{"m": {number}}}}}}}')
    error = await frame_of(ws, "error")
    assert error["code"] == "invalid", error
    assert [p["name"] for p in error["invalid_params"]] == ["metadata.n.m"]
    await ws.send_str('{"type": "message", "content": "fine", "client_id": "c2"}')
    assert (await frame_of(ws, "ack"))["client_id"] == "c2"
    await ws.close()
    _, messages, _ = await api.call("GET", f"/conversations/{cid}/messages", expect=200)
    assert [m["content"] for m in messages] == ["fine"]


async def test_a_good_since_still_replays(api: Api) -> None:
    cid = await api.create_conversation()
    await api.post_message(cid, "one")
    ws = await connect(api.client, cid, api.key, since=0)
    seqs, _ = await ready(ws)
    assert seqs == [1]
    await ws.close()
