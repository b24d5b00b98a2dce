"""Streamed messages over REST: open, append (idempotent, conflicting, all or nothing), complete,
abort, who may stream, and the limits."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from tests.conftest import Api


async def open_stream(api: Api, conversation_id: str, content: str = "", **body: Any) -> Any:
    _, message, _ = await api.call(
        "POST", f"/conversations/{conversation_id}/messages",
        {"content": content, "stream": True, "type": "AGENT_OUTPUT", **body}, expect=201)
    return message


async def append(
    api: Api, conversation_id: str, message_id: str, *deltas: tuple[int, str],
    expect: int | None = 200,
) -> tuple[int, Any]:
    status, body, _ = await api.call(
        "POST", f"/conversations/{conversation_id}/messages/{message_id}/deltas",
        {"deltas": [{"index": i, "text": t} for i, t in deltas]}, expect=expect)
    return status, body


async def listed(api: Api, conversation_id: str) -> list[Any]:
    _, messages, _ = await api.call("GET", f"/conversations/{conversation_id}/messages",
                                    expect=200)
    return messages


async def test_open_append_complete(api: Api, db: asyncpg.Connection) -> None:
    cid = await api.create_conversation()
    await api.post_message(cid, "question")
    message = await open_stream(api, cid, "A: ")
    assert message["seq"] == 2
    assert message["content"] == "A: "
    assert message["stream"] == {"state": "open", "next_index": 0}
    mid = message["id"]
    _, ack = await append(api, cid, mid, (0, "Hel"), (1, "lo"))
    assert ack == {"message_id": mid, "next_index": 2}
    await append(api, cid, mid, (2, ","))
    # The text so far is durable and visible to readers.
    [stored, _] = await listed(api, cid)
    assert stored["content"] == "A: Hello,"
    assert stored["stream"] == {"state": "open", "next_index": 3}
    row = await db.fetchrow("SELECT stream_ends FROM messages WHERE id = $1::uuid", mid)
    assert row["stream_ends"] == [3, 6, 8, 9]
    _, done, _ = await api.call(
        "POST", f"/conversations/{cid}/messages/{mid}/complete",
        {"status": "PROCESSED", "metadata": {"tokens": 3}}, expect=200)
    assert done["content"] == "A: Hello,"
    assert done["stream"] == {"state": "complete", "next_index": 3}
    assert done["status"] == "PROCESSED"
    assert done["metadata"] == {"tokens": 3}
    assert done["seq"] == 2
    # Closed: no more appends, no second close.
    status, problem = await append(api, cid, mid, (3, "!"), expect=409)
    assert problem["invalid-params"][0]["name"] == "message_id"
    await api.call("POST", f"/conversations/{cid}/messages/{mid}/abort", {}, expect=409)


async def test_idempotent_and_conflicting_appends(api: Api) -> None:
    cid = await api.create_conversation()
    mid = (await open_stream(api, cid))["id"]
    await append(api, cid, mid, (0, "a"), (1, "b"))
    # A retry of applied deltas (with or without new ones after them) is acknowledged again.
    _, ack = await append(api, cid, mid, (1, "b"))
    assert ack["next_index"] == 2
    _, ack = await append(api, cid, mid, (0, "a"), (1, "b"), (2, "c"))
    assert ack["next_index"] == 3
    # The same index with other text, a gap, a repeat out of order: 409 naming the index.
    _, problem = await append(api, cid, mid, (1, "X"), expect=409)
    assert problem["expected_index"] == 3
    assert problem["invalid-params"][0]["name"] == "index"
    _, problem = await append(api, cid, mid, (5, "e"), expect=409)
    assert problem["expected_index"] == 3
    # All or nothing: a good delta before a bad one is not applied either.
    _, problem = await append(api, cid, mid, (3, "d"), (5, "f"), expect=409)
    assert problem["expected_index"] == 4
    [stored] = await listed(api, cid)
    assert stored["content"] == "abc"
    assert stored["stream"]["next_index"] == 3


async def test_abort_and_validation(api: Api) -> None:
    cid = await api.create_conversation()
    mid = (await open_stream(api, cid))["id"]
    base = f"/conversations/{cid}/messages/{mid}"
    for body, name in (({"deltas": []}, "deltas"), ({"deltas": [{"index": -1, "text": "x"}]},
                                                     "deltas[0].index"),
                       ({"deltas": [{"index": 0}]}, "deltas[0].text"), ({}, "deltas")):
        status, problem, _ = await api.call("POST", base + "/deltas", body)
        assert status == 400, problem
        assert problem["invalid-params"][0]["name"] == name
    status, problem, _ = await api.call("POST", base + "/abort", {"reason": ""})
    assert status == 400
    _, aborted, _ = await api.call("POST", base + "/abort", {"reason": "user left"}, expect=200)
    assert aborted["stream"] == {"state": "aborted", "next_index": 0, "reason": "user left"}
    # A message posted whole is no stream.
    plain = await api.post_message(cid, "whole")
    assert "stream" not in plain
    await append(api, cid, plain["id"], (0, "x"), expect=409)
    await api.call("POST", f"/conversations/{cid}/messages/{'0' * 32}/deltas",
                   {"deltas": [{"index": 0, "text": "x"}]}, expect=404)


async def test_complete_content_replaces_the_text(api: Api) -> None:
    cid = await api.create_conversation()
    mid = (await open_stream(api, cid))["id"]
    await append(api, cid, mid, (0, "draft"))
    _, done, _ = await api.call("POST", f"/conversations/{cid}/messages/{mid}/complete",
                                {"content": "final answer"}, expect=200)
    assert done["content"] == "final answer"


async def test_browser_tokens_and_other_keys_may_not_stream(api: Api, api_for: Any) -> None:
    cid = await api.create_conversation()
    _, token, _ = await api.call("POST", f"/conversations/{cid}/tokens", {"user": "ann"},
                                 expect=201)
    browser = Api(api.client, token["token"])
    status, problem, _ = await browser.call(
        "POST", f"/conversations/{cid}/messages", {"content": "", "stream": True})
    assert status == 403, problem
    mid = (await open_stream(api, cid))["id"]
    await append(browser, cid, mid, (0, "x"), expect=403)
    other = await api_for(None, name="someone-else")
    await append(other, cid, mid, (0, "x"), expect=403)
    await api.call("POST", f"/conversations/{cid}/messages/{mid}/complete", {}, expect=200)


async def test_opening_is_idempotent_with_a_client_id(api: Api) -> None:
    cid = await api.create_conversation()
    opened = await asyncio.gather(*(open_stream(api, cid, client_id="answer-7") for _ in range(8)))
    assert len({m["id"] for m in opened}) == 1
    status, problem, _ = await api.call("POST", f"/conversations/{cid}/messages", {
        "content": "other", "stream": True, "type": "AGENT_OUTPUT", "client_id": "answer-7"})
    assert status == 422, problem
    assert len(await listed(api, cid)) == 1
