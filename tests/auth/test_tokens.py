"""Browser tokens: minting, the three ways to present them, scope and expiry."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from chatserver.appkeys import TOKENS
from tests.conftest import Api
from tests.realtime.helpers import closed_with, frame_of, ready, send


async def mint(api: Api, cid: str, user: str = "alice", **body: Any) -> str:
    _, created, _ = await api.call(
        "POST", f"/conversations/{cid}/tokens", {"user": user, **body}, expect=201
    )
    assert created["expires_at"].endswith("Z")
    return created["token"]


async def test_token_in_subprotocol_selects_chatserver_v1(api: Api) -> None:
    cid = await api.create_conversation()
    token = await mint(api, cid, "alice")
    ws = await api.client.ws_connect(
        f"/ws/conversations/{cid}", protocols=("chatserver.v1", f"bearer.{token}")
    )
    assert ws.protocol == "chatserver.v1"
    await ready(ws)
    assert (await frame_of(ws, "presence"))["members"] == ["alice"]
    await send(ws, type="message", content="from the browser", client_id="b1")
    ack = await frame_of(ws, "ack")
    assert ack["message"]["created_by"] == "alice"
    await ws.close()


async def test_token_in_query(api: Api) -> None:
    cid = await api.create_conversation()
    await api.post_message(cid, "one")
    token = await mint(api, cid)
    ws = await api.client.ws_connect(f"/ws/conversations/{cid}?token={token}&since=0")
    replayed, _ = await ready(ws)
    assert replayed == [1]
    await ws.close()


async def test_token_for_another_conversation_is_refused(api: Api) -> None:
    cid = await api.create_conversation()
    other = await api.create_conversation()
    token = await mint(api, cid)
    ws = await api.client.ws_connect(f"/ws/conversations/{other}?token={token}")
    assert await closed_with(ws) == 4404
    status, _, _ = await api.call("GET", f"/conversations/{other}/messages",
                                  headers={"Authorization": f"Bearer {token}"})
    assert status == 404


async def test_expired_or_forged_token_is_refused(api: Api) -> None:
    cid = await api.create_conversation()
    signer = api.client.server.app[TOKENS]
    expired, _ = signer.issue(uuid.UUID(hex=cid), "alice", None, ttl=-60)
    for bad in (expired, expired[:-4] + "AAAA", "not.a.token"):
        ws = await api.client.ws_connect(f"/ws/conversations/{cid}?token={bad}")
        assert await closed_with(ws) == 4401
        status, _, _ = await api.call("GET", f"/conversations/{cid}/messages",
                                      headers={"Authorization": f"Bearer {bad}"})
        assert status == 401


async def test_token_reads_and_posts_its_messages_and_nothing_else(api: Api) -> None:
    cid = await api.create_conversation()
    await api.post_message(cid, "hello")
    browser = Api(api.client, await mint(api, cid))
    _, history, _ = await browser.call("GET", f"/conversations/{cid}/messages", expect=200)
    assert [m["content"] for m in history] == ["hello"]
    _, history, _ = await browser.call("GET", f"/api/conversations/{cid}/messages", expect=200)
    _, posted, _ = await browser.call("POST", f"/conversations/{cid}/messages", {"content": "x"},
                                      expect=201)
    assert posted["created_by"] == "alice"
    for method, path, body in [
        ("GET", f"/conversations/{cid}", None),
        ("GET", "/conversations", None),
        ("POST", f"/conversations/{cid}/tokens", {"user": "mallory"}),
        ("POST", "/conversations", {"channel": "API"}),
    ]:
        status, problem, _ = await browser.call(method, path, body)
        assert status == 403, (method, path, status)
        assert problem["status"] == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "participant"), ({"user": ""}, "user"), ({"user": 5}, "user"),
     ({"participant": "a b"}, "participant"), ({"participant": "x" * 129}, "participant"),
     ({"participant": "a", "user": "b"}, "user"), ({"participant": "a", "kind": "bot"}, "kind"),
     ({"user": "a", "ttl": 0}, "ttl"), ({"user": "a", "ttl": 10**9}, "ttl"),
     ({"user": "a", "ttl": "long"}, "ttl"), ({"user": "a", "scope": "all"}, "scope")],
)
async def test_bad_token_requests_name_the_field(api: Api, body: Any, field: str) -> None:
    cid = await api.create_conversation()
    _, problem, _ = await api.call("POST", f"/conversations/{cid}/tokens", body, expect=400)
    assert field in [p["name"] for p in problem["invalid-params"]]


async def test_team_key_mints_only_for_its_team(api_for: Any) -> None:
    team1 = await api_for(1)
    team2 = await api_for(2)
    cid = await team1.create_conversation()
    await team2.call("POST", f"/conversations/{cid}/tokens", {"user": "x"}, expect=404)
    token = await mint(team1, cid)
    browser = Api(team1.client, token)
    await browser.call("GET", f"/conversations/{cid}/messages", expect=200)


async def test_configured_secret_is_used(settings: Any, aiohttp_client: Any, make_key: Any) -> None:
    from chatserver.app import create_app
    from chatserver.auth.tokens import TokenSigner

    secret = "s" * 64
    client = await aiohttp_client(create_app(settings.replace(realtime={"token_secret": secret})))
    api = Api(client, await make_key("admin"))
    cid = await api.create_conversation()
    token, _ = TokenSigner(secret.encode()).issue(uuid.UUID(hex=cid), "bob", None, 60)
    await Api(client, token).call("GET", f"/conversations/{cid}/messages", expect=200)
