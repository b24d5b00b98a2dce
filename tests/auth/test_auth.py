"""API keys: bearer auth, revocation, and team isolation (other team's ids look unknown)."""

from __future__ import annotations

from typing import Any

import asyncpg

from chatserver.store import api_keys
from tests.conftest import Api


async def test_missing_malformed_and_unknown_keys_are_401(client: Any, make_key: Any) -> None:
    key = await make_key()
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer csk_unknownunknownunknown"},
                    {"Authorization": f"Bearer {key}x"}, {"Authorization": "Bearer short"}):
        resp = await client.get("/conversations", headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.content_type == "application/problem+json"
    resp = await client.get("/conversations", headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200


async def test_keys_are_stored_hashed_and_revocable(
    client: Any, make_key: Any, db: asyncpg.Connection
) -> None:
    key = await make_key("to-revoke")
    rows = await api_keys.list_keys(db)
    assert all(key not in str(dict(r)) for r in rows)
    stored = await db.fetchval("SELECT key_hash FROM api_keys WHERE name = 'to-revoke'")
    assert len(stored) == 32
    key_id = await db.fetchval("SELECT id FROM api_keys WHERE name = 'to-revoke'")
    assert await api_keys.revoke_key(db, key_id)
    resp = await client.get("/conversations", headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 401


async def test_team_isolation(api_for: Any, api: Api) -> None:
    team_a = await api_for(1, "a")
    team_b = await api_for(2, "b")
    a_conv = await team_a.create_conversation()
    await team_a.post_message(a_conv, "secret")
    # Team B sees team A's conversation as unknown, on every route, with the same body.
    unknown = "f" * 32
    for method, suffix, body in (
        ("GET", "", None), ("PATCH", "", {"metadata": {}}), ("GET", "/messages", None),
        ("POST", "/messages", {"content": "x"}),
        ("PATCH", "/messages/" + "a" * 32, {"status": "PROCESSED"}),
    ):
        s1, b1, _ = await team_b.call(method, f"/conversations/{a_conv}{suffix}", body)
        s2, b2, _ = await team_b.call(method, f"/conversations/{unknown}{suffix}", body)
        assert s1 == s2 == 404, (method, suffix)
        b1.pop("request_id"), b2.pop("request_id")
        assert b1 == b2
    _, listed, _ = await team_b.call("GET", "/conversations", expect=200)
    assert listed == []
    _, listed, _ = await team_a.call("GET", "/conversations", expect=200)
    assert [c["id"] for c in listed] == [a_conv]
    # The admin key sees everything.
    _, conv, _ = await api.call("GET", f"/conversations/{a_conv}", expect=200)
    assert conv["team_id"] == 1


async def test_team_key_creates_in_its_team(api_for: Any) -> None:
    team = await api_for(7)
    conversation_id = await team.create_conversation(team_id=7)
    _, conv, _ = await team.call("GET", f"/conversations/{conversation_id}", expect=200)
    assert conv["team_id"] == 7
    conversation_id = await team.create_conversation()
    _, conv, _ = await team.call("GET", f"/conversations/{conversation_id}", expect=200)
    assert conv["team_id"] == 7
    status, body, _ = await team.call("POST", "/conversations", {"channel": "API", "team_id": 8})
    assert status == 400
    assert body["invalid-params"][0]["name"] == "team_id"


async def test_admin_key_may_set_any_team(api: Api) -> None:
    conversation_id = await api.create_conversation(team_id=5)
    _, conv, _ = await api.call("GET", f"/conversations/{conversation_id}", expect=200)
    assert conv["team_id"] == 5
