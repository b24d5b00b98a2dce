"""Participants over REST: create/update/remove, who may, team scoping, tokens and their
participant, read horizons, and the conversation list by participant with unread counts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.auth.test_tokens import mint
from tests.conftest import Api


def participants_url(cid: str, pid: str | None = None) -> str:
    return f"/conversations/{cid}/participants" + (f"/{pid}" if pid else "")


async def test_put_creates_then_updates_and_is_idempotent(api: Api) -> None:
    cid = await api.create_conversation()
    body = {"kind": "operator", "name": "Olga", "role": "observer", "metadata": {"desk": 3}}
    _, created, _ = await api.call("PUT", participants_url(cid, "olga"), body, expect=201)
    assert created | {"joined_at": None} == {
        "id": "olga", "kind": "operator", "name": "Olga", "role": "observer",
        "metadata": {"desk": 3}, "joined_at": None, "last_read_seq": 0}
    _, again, _ = await api.call("PUT", participants_url(cid, "olga"), body, expect=200)
    assert again == created
    _, changed, _ = await api.call("PUT", participants_url(cid, "olga"),
                                   {**body, "role": "member"}, expect=200)
    assert changed["role"] == "member" and changed["joined_at"] == created["joined_at"]
    _, listed, _ = await api.call("GET", participants_url(cid), expect=200)
    assert [p["id"] for p in listed] == ["olga"]


async def test_delete_removes_but_messages_keep_their_author(api: Api) -> None:
    cid = await api.create_conversation()
    token = await mint(api, cid, "alice")
    browser = Api(api.client, token)
    await browser.call("POST", f"/conversations/{cid}/messages", {"content": "hi"}, expect=201)
    await api.call("DELETE", participants_url(cid, "alice"), expect=204)
    _, listed, _ = await api.call("GET", participants_url(cid), expect=200)
    assert listed == []
    _, history, _ = await api.call("GET", f"/conversations/{cid}/messages", expect=200)
    assert history[0]["author"] == {"id": "alice", "kind": "user", "name": "alice"}
    # Its token no longer writes, and a second DELETE finds nobody.
    await browser.call("POST", f"/conversations/{cid}/messages", {"content": "x"}, expect=401)
    await api.call("DELETE", participants_url(cid, "alice"), expect=404)


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "robot"}, "kind"), ({"role": "admin"}, "role"), ({"name": ""}, "name"),
    ({"metadata": []}, "metadata"), ({"colour": "red"}, "colour"),
])
async def test_bad_puts_name_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    cid = await api.create_conversation()
    _, problem, _ = await api.call("PUT", participants_url(cid, "p1"), body, expect=400)
    assert field in [p["name"] for p in problem["invalid-params"]]


async def test_bad_ids_and_unknown_participants(api: Api) -> None:
    cid = await api.create_conversation()
    _, problem, _ = await api.call("PUT", participants_url(cid, "a%20b"), {}, expect=400)
    assert problem["invalid-params"][0]["name"] == "participant_id"
    await api.call("PUT", participants_url(cid, "x" * 129), {}, expect=400)
    await api.call("DELETE", participants_url(cid, "nobody"), expect=404)
    await api.call("POST", participants_url(cid, "nobody") + "/read", {"seq": 0}, expect=404)
    await api.call("GET", participants_url("0" * 32), expect=404)


async def test_another_teams_participants_are_404(api_for: Any) -> None:
    team1, team2 = await api_for(1), await api_for(2)
    cid = await team1.create_conversation()
    await team1.call("PUT", participants_url(cid, "alice"), {}, expect=201)
    await team2.call("GET", participants_url(cid), expect=404)
    await team2.call("PUT", participants_url(cid, "alice"), {}, expect=404)
    await team2.call("DELETE", participants_url(cid, "alice"), expect=404)
    await team2.call("POST", participants_url(cid, "alice") + "/read", {"seq": 0}, expect=404)
    _, listed, _ = await team2.call("GET", "/conversations?participant=alice", expect=200)
    assert listed == []


async def test_tokens_read_participants_but_do_not_manage_them(api: Api) -> None:
    cid = await api.create_conversation()
    browser = Api(api.client, await mint(api, cid, "alice"))  # minting created alice
    _, listed, _ = await browser.call("GET", participants_url(cid), expect=200)
    assert [(p["id"], p["kind"], p["role"]) for p in listed] == [("alice", "user", "member")]
    await browser.call("PUT", participants_url(cid, "bob"), {}, expect=403)
    await browser.call("DELETE", participants_url(cid, "alice"), expect=403)
    await browser.call("GET", "/conversations?participant=alice", expect=403)


async def test_closed_conversations_mint_only_for_existing_participants(api: Api) -> None:
    cid = await api.create_conversation(config={"participants": "closed"})
    await api.call("POST", f"/conversations/{cid}/tokens", {"participant": "eve"}, expect=404)
    await api.call("PUT", participants_url(cid, "eve"), {}, expect=201)
    await api.call("POST", f"/conversations/{cid}/tokens", {"participant": "eve"}, expect=201)
    await api.call("POST", "/conversations", {"channel": "API",
                                              "config": {"participants": "ajar"}}, expect=400)


async def test_agent_token_for_a_user_participant_is_409(api: Api) -> None:
    cid = await api.create_conversation()
    await api.call("PUT", participants_url(cid, "alice"), {"kind": "user"}, expect=201)
    _, problem, _ = await api.call("POST", f"/conversations/{cid}/tokens",
                                   {"participant": "alice", "kind": "agent"}, expect=409)
    assert problem["invalid-params"][0]["name"] == "kind"


async def test_read_horizon_moves_forward_only(api: Api) -> None:
    cid = await api.create_conversation()
    for n in range(3):
        await api.post_message(cid, f"m{n}")
    browser = Api(api.client, await mint(api, cid, "alice"))
    read = participants_url(cid, "alice") + "/read"
    _, alice, _ = await browser.call("POST", read, {"seq": 2}, expect=200)
    assert alice["last_read_seq"] == 2
    _, alice, _ = await api.call("POST", read, {"seq": 1}, expect=200)  # lower: ignored
    assert alice["last_read_seq"] == 2
    _, problem, _ = await browser.call("POST", read, {"seq": 4}, expect=400)
    assert problem["invalid-params"][0]["name"] == "seq"
    await browser.call("POST", read, {"seq": "2"}, expect=400)
    # A token marks only its own participant's horizon.
    await api.call("PUT", participants_url(cid, "bob"), {}, expect=201)
    await browser.call("POST", participants_url(cid, "bob") + "/read", {"seq": 1}, expect=404)


async def test_conversation_list_by_participant(api: Api) -> None:
    quiet, busy, other = [await api.create_conversation() for _ in range(3)]
    for cid in (quiet, busy):
        await api.call("PUT", participants_url(cid, "alice"), {}, expect=201)
    await api.call("PUT", participants_url(other, "bob"), {}, expect=201)
    for n in range(4):
        await api.post_message(busy, f"b{n}")
    _, listed, _ = await api.call("GET", "/conversations?participant=alice", expect=200)
    assert [c["id"] for c in listed] == [busy, quiet]  # newest activity first
    assert [c["unread_count"] for c in listed] == [4, 0]
    assert listed[0]["last_message"]["content"] == "b3" and listed[1]["last_message"] is None
    await api.call("POST", participants_url(busy, "alice") + "/read", {"seq": 3}, expect=200)
    _, page, headers = await api.call("GET", "/conversations?participant=alice&limit=1",
                                      expect=200)
    assert [c["unread_count"] for c in page] == [1]
    _, rest, _ = await api.call("GET", headers["Link"].split(">")[0][1:], expect=200)
    assert [c["id"] for c in rest] == [quiet]
    await api.call("GET", "/conversations?participant=a%20b", expect=400)


async def test_unread_counts_after_concurrent_posts(api: Api) -> None:
    cid = await api.create_conversation()
    alice = Api(api.client, await mint(api, cid, "alice"))
    bob = Api(api.client, await mint(api, cid, "bob"))
    url = f"/conversations/{cid}/messages"

    async def post(who: Api, n: int) -> None:
        await who.call("POST", url, {"content": f"m{n}"}, expect=201)

    # 20 from bob and 20 from an integration race 10 from alice; alice's own count as read,
    # and each of her posts moves her horizon to it.
    await asyncio.gather(*(post(bob, n) for n in range(20)),
                         *(api.post_message(cid, f"i{n}") for n in range(20)),
                         *(post(alice, n) for n in range(10)))
    _, history, _ = await api.call("GET", f"{url}?order=asc&limit=100", expect=200)
    last_by_alice = max(m["seq"] for m in history if m["author"]["id"] == "alice")
    expected = {"alice": 50 - last_by_alice,
                "bob": 50 - max(m["seq"] for m in history if m["author"]["id"] == "bob")}
    for pid, unread in expected.items():
        _, listed, _ = await api.call("GET", f"/conversations?participant={pid}", expect=200)
        assert listed[0]["unread_count"] == unread, pid
        not_theirs = [m for m in history if m["seq"] > listed[0]["last_read_seq"]]
        assert all(m["author"]["id"] != pid for m in not_theirs)
