"""The Conversations REST API: create, read, list, update, with the seed's example bodies."""

from __future__ import annotations

import io
import re

import orjson

from tests.conftest import Api

WORKFLOW_BODY = {
    "channel": "API",
    "usecase": "WORKFLOW_EXECUTION",
    "config": {"workflow_id": "123", "callback_url": "https://example.com/webhook"},
}
DEFAULT_BODY = {
    "channel": "API",
    "usecase": "DEFAULT",
    "config": {"callback_url": "https://example.com/webhook"},
}


async def test_seed_workflow_example_creates_and_copies_workflow_id(api: Api) -> None:
    for prefix in ("", "/api"):
        status, body, _ = await api.call("POST", f"{prefix}/conversations", WORKFLOW_BODY)
        assert status == 201
        assert re.fullmatch(r"[0-9a-f]{32}", body["id"])
        _, conv, _ = await api.call("GET", f"{prefix}/conversations/{body['id']}", expect=200)
        assert conv["usecase"] == "WORKFLOW_EXECUTION"
        assert conv["metadata"] == {"workflow_id": "123"}
        assert conv["config"]["callback_url"] == "https://example.com/webhook"
        assert conv["last_seq"] == 0
        assert conv["created_at"].endswith("Z")


async def test_seed_default_example(api: Api) -> None:
    conversation_id = await api.create_conversation(**DEFAULT_BODY)
    _, conv, _ = await api.call("GET", f"/conversations/{conversation_id}", expect=200)
    assert conv["usecase"] == "DEFAULT"
    assert conv["metadata"] == {}


async def test_usecase_defaults_to_default_and_extra_config_is_kept(api: Api) -> None:
    conversation_id = await api.create_conversation(config={"tone": "formal"}, metadata={"a": 1})
    _, conv, _ = await api.call("GET", f"/conversations/{conversation_id}", expect=200)
    assert conv["usecase"] == "DEFAULT"
    assert conv["config"] == {"tone": "formal"}
    assert conv["metadata"] == {"a": 1}


async def test_integer_workflow_id_is_stored_as_string(api: Api) -> None:
    conversation_id = await api.create_conversation(
        usecase="WORKFLOW_EXECUTION", config={"workflow_id": 84}
    )
    _, conv, _ = await api.call("GET", f"/conversations/{conversation_id}", expect=200)
    assert conv["config"]["workflow_id"] == "84"
    assert conv["metadata"]["workflow_id"] == "84"


async def test_create_validation_names_every_bad_field(api: Api) -> None:
    status, body, headers = await api.call("POST", "/conversations", {
        "channel": "SMS", "usecase": "NOPE", "config": {"callback_url": "ftp://x"},
        "metadata": [], "team_id": "five", "extra": True,
    })
    assert status == 400
    assert headers["Content-Type"].startswith("application/problem+json")
    names = {p["name"] for p in body["invalid-params"]}
    assert names == {"channel", "usecase", "config.callback_url", "metadata", "team_id", "extra"}


async def test_workflow_execution_requires_workflow_id(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/conversations", {"channel": "API", "usecase": "WORKFLOW_EXECUTION"}
    )
    assert status == 400
    assert body["invalid-params"] == [
        {"name": "config.workflow_id", "reason": "is required for usecase WORKFLOW_EXECUTION"}
    ]


async def test_callback_url_must_be_absolute_http(api: Api) -> None:
    for url in ("example.com/hook", "/relative", "ftp://example.com", "javascript:alert(1)", 5):
        status, body, _ = await api.call(
            "POST", "/conversations", {"channel": "API", "config": {"callback_url": url}}
        )
        assert status == 400, url
        assert body["invalid-params"][0]["name"] == "config.callback_url"


async def test_channel_is_required(api: Api) -> None:
    status, body, _ = await api.call("POST", "/conversations", {"usecase": "DEFAULT"})
    assert status == 400
    assert body["invalid-params"][0]["name"] == "channel"


async def test_malformed_and_hostile_bodies_are_400(api: Api) -> None:
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    cases = [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b"", "body"),
        (b'{"channel": "API", "metadata": {"a": "nul\\u0000"}}', "metadata.a"),
        (b'{"channel": "API", "team_id": 99999999999999999999}', "team_id"),
        (b'{"channel": "API", "team_id": 9223372036854775808}', "team_id"),
    ]
    for raw, field in cases:
        status, body, _ = await api.call("POST", "/conversations", data=raw,
                                         headers={"Content-Type": "application/json"})
        assert status == 400, raw
        assert field in {p["name"] for p in body["invalid-params"]}, (raw, body)
    status, body, _ = await api.call("POST", "/conversations", {"channel": "API", "metadata": deep})
    assert status == 400
    assert "deeper" in body["detail"]


async def test_oversized_body_is_413_problem(api: Api) -> None:
    big = io.BytesIO(orjson.dumps({"channel": "API", "metadata": {"blob": "x" * 2_000_000}}))
    status, body, headers = await api.call("POST", "/conversations", data=big)
    assert status == 413
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == 413


async def test_unknown_and_malformed_ids(api: Api) -> None:
    status, body, _ = await api.call("GET", "/conversations/" + "0" * 32)
    assert status == 404
    assert body["detail"] == "conversation not found"
    for bad in ("abc", "z" * 32, "0" * 31):
        status, body, _ = await api.call("GET", f"/conversations/{bad}")
        assert status == 400
        assert body["invalid-params"][0]["name"] == "conversation_id"


async def test_list_is_newest_first_and_keyset_paginated(api: Api) -> None:
    created = [await api.create_conversation(metadata={"n": i}) for i in range(5)]
    _, page1, headers = await api.call("GET", "/conversations?limit=2", expect=200)
    assert [c["id"] for c in page1] == created[::-1][:2]
    next_url = re.match(r"<([^>]+)>; rel=\"next\"", headers["Link"])[1]
    _, page2, headers = await api.call("GET", next_url, expect=200)
    assert [c["id"] for c in page2] == created[::-1][2:4]
    next_url = re.match(r"<([^>]+)>; rel=\"next\"", headers["Link"])[1]
    _, page3, headers = await api.call("GET", next_url, expect=200)
    assert [c["id"] for c in page3] == created[:1]
    assert "Link" not in headers
    status, body, _ = await api.call("GET", "/conversations?before=garbage!")
    assert status == 400
    assert body["invalid-params"][0]["name"] == "before"


async def test_patch_merges_config_and_metadata(api: Api) -> None:
    conversation_id = await api.create_conversation(**WORKFLOW_BODY, metadata={"keep": 1})
    path = f"/conversations/{conversation_id}"
    _, conv, _ = await api.call("PATCH", path, {
        "config": {"callback_url": "https://hooks.example.org/new", "extra": "x"},
        "metadata": {"drop": None, "added": True},
    }, expect=200)
    assert conv["config"] == {
        "workflow_id": "123", "callback_url": "https://hooks.example.org/new", "extra": "x"
    }
    assert conv["metadata"] == {"keep": 1, "workflow_id": "123", "added": True}
    _, conv, _ = await api.call("PATCH", path, {"config": {"callback_url": None}}, expect=200)
    assert "callback_url" not in conv["config"]
    assert conv["updated_at"] > conv["created_at"]


async def test_patch_rules(api: Api) -> None:
    conversation_id = await api.create_conversation(**WORKFLOW_BODY)
    path = f"/conversations/{conversation_id}"
    status, body, _ = await api.call("PATCH", path, {"usecase": "DEFAULT", "channel": "API"})
    assert status == 400
    assert {p["name"] for p in body["invalid-params"]} == {"usecase", "channel"}
    status, body, _ = await api.call("PATCH", path, {"config": {"workflow_id": None}})
    assert status == 400
    assert body["invalid-params"][0]["name"] == "config.workflow_id"
    status, body, _ = await api.call("PATCH", path, {"config": {"callback_url": "nope"}})
    assert status == 400
    assert body["invalid-params"][0]["name"] == "config.callback_url"
    status, _, _ = await api.call("PATCH", path, {})
    assert status == 400
    status, _, _ = await api.call("PATCH", "/conversations/" + "1" * 32, {"metadata": {}})
    assert status == 404
    _, conv, _ = await api.call("GET", path, expect=200)
    assert conv["config"] == WORKFLOW_BODY["config"]


async def test_health_endpoints_need_no_key(client) -> None:
    for path in ("/healthz", "/readyz", "/api/healthz"):
        resp = await client.get(path)
        assert resp.status == 200
    body = await (await client.get("/readyz")).json()
    assert body["checks"]["database"] == "ok"


async def test_unknown_route_and_method_are_problems(api: Api) -> None:
    status, body, _ = await api.call("GET", "/nothing-here")
    assert status == 404
    assert body["status"] == 404
    status, body, headers = await api.call("DELETE", "/conversations")
    assert status == 405
    assert "Allow" in headers


async def test_unexpected_failure_is_a_500_without_internals(api: Api, db, caplog) -> None:
    conversation_id = await api.create_conversation()
    await db.execute("ALTER TABLE messages RENAME COLUMN content TO body")
    status, body, headers = await api.call("GET", f"/conversations/{conversation_id}/messages")
    assert status == 500
    assert body["detail"] == "internal error; quote the request_id"
    assert "content" not in str(body) and "column" not in str(body)
    assert headers["X-Request-Id"] == body["request_id"]
    assert body["request_id"] in caplog.text


async def test_callback_url_that_cannot_be_parsed_is_400(api: Api) -> None:
    for url in ("http://[::1", "http://\u007f\u00a2]b", "http://x:99999999/"):
        status, body, _ = await api.call(
            "POST", "/conversations", {"channel": "API", "config": {"callback_url": url}}
        )
        assert status in (201, 400), url
        if status == 400:
            assert body["invalid-params"][0]["name"] == "config.callback_url"
