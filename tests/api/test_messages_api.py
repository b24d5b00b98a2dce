"""Messages: posting with gap-free seqs, idempotency, history pages, updates, validation."""

from __future__ import annotations

import asyncio
import re

from tests.conftest import Api, next_link


async def test_post_returns_the_stored_message(api: Api) -> None:
    conversation_id = await api.create_conversation()
    message = await api.post_message(conversation_id, "hello", metadata={"k": "v"})
    assert re.fullmatch(r"[0-9a-f]{32}", message["id"])
    assert message["conversation_id"] == conversation_id
    assert message["seq"] == 1
    assert message["content_type"] == "TEXT"
    assert message["type"] == "USER_INPUT"
    assert message["status"] == "RECEIVED"
    assert message["channel"] == "API"
    assert message["created_by"] == "admin"
    assert message["metadata"] == {"k": "v"}
    assert message["filename"] is None
    _, listed, _ = await api.call("GET", f"/conversations/{conversation_id}/messages", expect=200)
    assert listed == [message]
    _, conv, _ = await api.call("GET", f"/conversations/{conversation_id}", expect=200)
    assert conv["last_seq"] == 1


async def test_concurrent_posts_get_unique_gap_free_seqs(api: Api) -> None:
    conversation_id = await api.create_conversation()
    results = await asyncio.gather(
        *(api.post_message(conversation_id, f"m{i}") for i in range(60))
    )
    assert sorted(m["seq"] for m in results) == list(range(1, 61))
    _, listed, _ = await api.call(
        "GET", f"/conversations/{conversation_id}/messages?limit=500", expect=200
    )
    assert [m["seq"] for m in listed] == list(range(60, 0, -1))


async def test_a_client_posting_one_after_another_gets_increasing_seqs(api: Api) -> None:
    conversation_id = await api.create_conversation()

    async def sequential(client: int) -> list[int]:
        # Each post waits for the answer to the one before: a sequential client.
        return [(await api.post_message(conversation_id, f"{client}-{k}"))["seq"]
                for k in range(15)]

    # Several such clients at once keep group-commit batches overlapping.
    for seqs in await asyncio.gather(*(sequential(c) for c in range(6))):
        assert seqs == sorted(seqs)


async def test_media_needs_filename(api: Api) -> None:
    conversation_id = await api.create_conversation()
    path = f"/conversations/{conversation_id}/messages"
    for content_type in ("IMAGE", "VIDEO", "AUDIO", "FILE"):
        status, body, _ = await api.call("POST", path, {
            "content": "https://x/y", "content_type": content_type,
        })
        assert status == 400
        assert body["invalid-params"][0]["name"] == "filename"
    message = await api.post_message(
        conversation_id, "https://cdn.example.com/cat.png", content_type="IMAGE",
        filename="cat.png",
    )
    assert message["filename"] == "cat.png"
    assert message["seq"] == 1


async def test_message_validation(api: Api) -> None:
    conversation_id = await api.create_conversation()
    path = f"/conversations/{conversation_id}/messages"
    cases = [
        ({}, "content"),
        ({"content": 5}, "content"),
        ({"content": None}, "content"),
        ({"content": "x", "content_type": "GIF"}, "content_type"),
        ({"content": "x", "type": "SHOUT"}, "type"),
        ({"content": "x", "status": "DONE"}, "status"),
        ({"content": "x", "metadata": "m"}, "metadata"),
        ({"content": "x", "client_id": ""}, "client_id"),
        ({"content": "x", "client_id": 7}, "client_id"),
        ({"content": "x", "unknown": 1}, "unknown"),
        ({"content": "nul\u0000byte"}, "content"),
        ({"content": "x" * 70_000}, "content"),
    ]
    for body, field in cases:
        status, problem, _ = await api.call("POST", path, body)
        assert status == 400, body
        assert field in {p["name"] for p in problem["invalid-params"]}, (body, problem)
    _, listed, _ = await api.call("GET", path, expect=200)
    assert listed == []


async def test_posting_to_unknown_conversation_is_404(api: Api) -> None:
    status, _, _ = await api.call("POST", f"/conversations/{'e' * 32}/messages", {"content": "x"})
    assert status == 404


async def test_client_id_makes_retries_idempotent(api: Api) -> None:
    conversation_id = await api.create_conversation()
    path = f"/conversations/{conversation_id}/messages"
    _, first, headers = await api.call("POST", path, {"content": "hi", "client_id": "c1"},
                                       expect=201)
    assert "Idempotent-Replayed" not in headers
    _, again, headers = await api.call("POST", path, {"content": "hi", "client_id": "c1"},
                                       expect=201)
    assert again == first
    assert headers["Idempotent-Replayed"] == "true"
    status, body, _ = await api.call("POST", path, {"content": "different", "client_id": "c1"})
    assert status == 422
    assert body["invalid-params"][0]["name"] == "client_id"
    second = await api.post_message(conversation_id, "next")
    assert second["seq"] == 2


async def test_idempotency_key_header(api: Api) -> None:
    conversation_id = await api.create_conversation()
    path = f"/conversations/{conversation_id}/messages"
    _, first, _ = await api.call("POST", path, {"content": "hi"},
                                 headers={"Idempotency-Key": "k-1"}, expect=201)
    assert first["client_id"] == "k-1"
    _, again, _ = await api.call("POST", path, {"content": "hi", "client_id": "k-1"},
                                 headers={"Idempotency-Key": "k-1"}, expect=201)
    assert again == first
    status, body, _ = await api.call("POST", path, {"content": "hi", "client_id": "other"},
                                     headers={"Idempotency-Key": "k-1"})
    assert status == 400
    assert body["invalid-params"][0]["name"] == "client_id"


async def test_concurrent_retries_with_one_client_id_store_one_message(api: Api) -> None:
    conversation_id = await api.create_conversation()
    results = await asyncio.gather(*(
        api.post_message(conversation_id, "same", client_id="dup") for _ in range(10)
    ))
    assert len({m["id"] for m in results}) == 1
    nxt = await api.post_message(conversation_id, "after")
    assert nxt["seq"] == 2


async def test_pagination_edges(api: Api) -> None:
    conversation_id = await api.create_conversation()
    for i in range(7):
        await api.post_message(conversation_id, f"m{i + 1}")
    base = f"/conversations/{conversation_id}/messages"

    async def seqs(query: str) -> tuple[list[int], str | None]:
        _, page, headers = await api.call("GET", base + query, expect=200)
        return [m["seq"] for m in page], next_link(headers)

    assert await seqs("?limit=7") == ([7, 6, 5, 4, 3, 2, 1], None)
    page, link = await seqs("?limit=3")
    assert page == [7, 6, 5]
    assert "before=5" in link
    page, link = await seqs(link.removeprefix(base))
    assert page == [4, 3, 2]
    page, link = await seqs(link.removeprefix(base))
    assert (page, link) == ([1], None)
    page, link = await seqs("?order=asc&limit=3")
    assert page == [1, 2, 3]
    assert "after=3" in link
    assert (await seqs("?before=4&limit=2"))[0] == [3, 2]
    assert (await seqs("?after=4&limit=2&order=asc"))[0] == [5, 6]
    assert (await seqs("?after=4&limit=2"))[0] == [7, 6]
    assert (await seqs("?after=2&before=6"))[0] == [5, 4, 3]
    assert (await seqs("?before=1"))[0] == []
    assert (await seqs("?after=7"))[0] == []
    for bad in ("?limit=0", "?limit=501", "?limit=x", "?before=-1", "?after=x", "?order=up"):
        status, body, _ = await api.call("GET", base + bad)
        assert status == 400, bad
        assert body["invalid-params"][0]["name"] in ("limit", "before", "after", "order")


async def test_patch_message_keeps_seq(api: Api) -> None:
    conversation_id = await api.create_conversation()
    message = await api.post_message(conversation_id, "work", metadata={"a": 1})
    path = f"/conversations/{conversation_id}/messages/{message['id']}"
    _, updated, _ = await api.call("PATCH", path, {"status": "PROCESSED"}, expect=200)
    assert updated["status"] == "PROCESSED"
    assert updated["seq"] == message["seq"]
    assert updated["metadata"] == {"a": 1}
    _, updated, _ = await api.call("PATCH", path, {"metadata": {"b": 2}}, expect=200)
    assert updated["metadata"] == {"b": 2}
    assert updated["status"] == "PROCESSED"
    status, body, _ = await api.call("PATCH", path, {"status": "NOPE", "content": "x"})
    assert status == 400
    assert {p["name"] for p in body["invalid-params"]} == {"status", "content"}
    status, _, _ = await api.call("PATCH", path, {})
    assert status == 400
    status, body, _ = await api.call(
        "PATCH", f"/conversations/{conversation_id}/messages/{'0' * 32}", {"status": "FAILED"}
    )
    assert status == 404
    assert body["detail"] == "message not found"
