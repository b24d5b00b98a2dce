"""The workflow conversations REST API over real HTTP: every endpoint, errors, team scoping."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from chatserver.app import create_app
from chatserver.appkeys import PRINCIPAL
from chatserver.auth.keys import Principal
from chatserver.config import Settings
from chatserver.problems import Handler
from chatserver.services.cursors import encode_cursor
from tests.conftest import Api

SEED_BODY = {"agent_product_id": 123, "user_id": 456, "configuration": {"running": True}}
BAD_PATH_IDS = ["abc", "1.5", "0", "-1", "+1", "99999999999999999999", "9223372036854775808",
                "%D9%A3"]


async def create(api: Api, **body: Any) -> dict[str, Any]:
    _, created, _ = await api.call("POST", "/workflow-conversations", body, expect=201)
    return created  # type: ignore[no-any-return]


def problem_names(body: dict[str, Any]) -> set[str]:
    return {p["name"] for p in body["invalid-params"]}


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


async def test_seed_example_end_to_end(api: Api) -> None:
    for prefix in ("", "/api"):
        status, created, _ = await api.call("POST", f"{prefix}/workflow-conversations", SEED_BODY)
        assert status == 201
        assert isinstance(created["id"], int)
        assert created["agent_product_id"] == 123 and created["user_id"] == 456
        assert created["configuration"] == {"running": True}
        assert created["team_id"] is None
        path = f"{prefix}/workflow-conversations/{created['id']}"
        _, fetched, _ = await api.call("GET", path, expect=200)
        assert fetched == created
        _, updated, _ = await api.call(
            "PATCH", path, {"configuration": {"running": False}}, expect=200
        )
        assert updated["configuration"] == {"running": False}
        assert updated["updated_at"] > created["updated_at"]
        _, connected, _ = await api.call(
            "POST", path + "/connect", {"lastConnected": 1764000000000}, expect=200
        )
        assert connected["configuration"] == {"running": False, "lastConnected": 1764000000000}


async def test_create_defaults_configuration_and_user(api: Api) -> None:
    created = await create(api, agent_product_id=1)
    assert created["configuration"] == {} and created["user_id"] is None


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({}, {"agent_product_id"}),
        ({"agent_product_id": "x"}, {"agent_product_id"}),
        ({"agent_product_id": True}, {"agent_product_id"}),
        ({"agent_product_id": 1.5}, {"agent_product_id"}),
        ({"agent_product_id": 18446744073709551615}, {"agent_product_id"}),
        ({"agent_product_id": 99999999999999999999999}, {"agent_product_id"}),
        ({"agent_product_id": 9223372036854775808}, {"agent_product_id"}),
        ({"agent_product_id": 1, "user_id": "456"}, {"user_id"}),
        ({"agent_product_id": 1, "configuration": [1]}, {"configuration"}),
        ({"agent_product_id": 1, "configuration": "on"}, {"configuration"}),
        ({"agent_product_id": 1, "configuration": {"x": "\u0000"}}, {"configuration.x"}),
        ({"agent_product_id": 1, "team_id": 5, "extra": 1}, {"team_id", "extra"}),
    ],
)
async def test_create_rejects_bad_bodies_naming_the_field(
    api: Api, db: Any, body: dict[str, Any], names: set[str]
) -> None:
    status, problem, headers = await api.call("POST", "/workflow-conversations", body)
    assert status == 400, problem
    assert headers["Content-Type"].startswith("application/problem+json")
    assert problem_names(problem) == names
    assert await db.fetchval("SELECT count(*) FROM workflow_conversations") == 0


@pytest.mark.parametrize("raw", [b"", b"[1]", b"{", b'"x"'])
async def test_create_rejects_non_object_bodies(api: Api, raw: bytes) -> None:
    status, problem, _ = await api.call("POST", "/workflow-conversations", data=raw)
    assert status == 400
    assert problem_names(problem) == {"body"}


async def test_get_unknown_is_404(api: Api) -> None:
    status, problem, headers = await api.call("GET", "/workflow-conversations/777")
    assert status == 404
    assert headers["Content-Type"].startswith("application/problem+json")
    assert problem["detail"] == "workflow conversation not found"


@pytest.mark.parametrize("bad", BAD_PATH_IDS)
async def test_bad_path_ids_are_400_naming_the_field(api: Api, bad: str) -> None:
    requests = [("GET", f"/workflow-conversations/{bad}", None),
                ("PATCH", f"/workflow-conversations/{bad}", {"user_id": 1}),
                ("POST", f"/workflow-conversations/{bad}/connect", {"a": 1})]
    for method, path, body in requests:
        status, problem, _ = await api.call(method, path, body)
        assert status == 400, (method, path, problem)
        assert problem_names(problem) == {"id"}
    status, problem, _ = await api.call("GET", f"/users/{bad}/workflow-conversations")
    assert status == 400
    assert problem_names(problem) == {"user_id"}


async def test_patch_errors(api: Api) -> None:
    created = await create(api, agent_product_id=1, user_id=2, configuration={"keep": True})
    path = f"/workflow-conversations/{created['id']}"
    status, _, _ = await api.call("PATCH", "/workflow-conversations/424242", {"user_id": 3})
    assert status == 404
    status, problem, _ = await api.call("PATCH", path, {"colour": "red", "user_id": "x"})
    assert status == 400
    assert problem_names(problem) == {"colour", "user_id"}
    for body, name in [({"agent_product_id": None}, "agent_product_id"),
                       ({"agent_product_id": False}, "agent_product_id"),
                       ({"user_id": 2**64 - 1}, "user_id"),
                       ({"configuration": None}, "configuration"),
                       ({"configuration": [{"running": True}]}, "configuration")]:
        status, problem, _ = await api.call("PATCH", path, body)
        assert status == 400, body
        assert problem_names(problem) == {name}
    _, unchanged, _ = await api.call("GET", path, expect=200)
    assert unchanged == created
    _, cleared, _ = await api.call("PATCH", path, {"user_id": None}, expect=200)
    assert cleared["user_id"] is None and cleared["configuration"] == {"keep": True}


async def test_connect_errors(api: Api) -> None:
    status, _, _ = await api.call("POST", "/workflow-conversations/424242/connect", {"a": 1})
    assert status == 404
    created = await create(api, agent_product_id=1)
    status, problem, _ = await api.call(
        "POST", f"/workflow-conversations/{created['id']}/connect", data=b"[1, 2]"
    )
    assert status == 400
    assert problem_names(problem) == {"body"}


async def test_concurrent_connects_over_http_both_merge(api: Api) -> None:
    created = await create(api, agent_product_id=1, configuration={"running": True})
    path = f"/workflow-conversations/{created['id']}/connect"
    results = await asyncio.gather(
        api.call("POST", path, {"web": "socket-1"}), api.call("POST", path, {"mobile": "socket-2"})
    )
    assert [status for status, _, _ in results] == [200, 200]
    _, merged, _ = await api.call("GET", f"/workflow-conversations/{created['id']}", expect=200)
    assert merged["configuration"] == {"running": True, "web": "socket-1", "mobile": "socket-2"}


async def test_list_for_user_and_running_filter(api: Api) -> None:
    configurations: list[dict[str, Any]] = [
        {"running": True}, {"running": "true"}, {}, {"running": False}, {"running": True},
    ]
    made = [await create(api, agent_product_id=1, user_id=456, configuration=c)
            for c in configurations]
    await create(api, agent_product_id=1, user_id=457, configuration={"running": True})
    _, everything, headers = await api.call("GET", "/users/456/workflow-conversations", expect=200)
    assert [c["id"] for c in everything] == [c["id"] for c in reversed(made)]
    assert "Link" not in headers
    _, running, _ = await api.call(
        "GET", "/users/456/workflow-conversations?running=true", expect=200
    )
    assert [c["id"] for c in running] == [made[4]["id"], made[0]["id"]]
    _, all_again, _ = await api.call(
        "GET", "/api/users/456/workflow-conversations?running=false", expect=200
    )
    assert all_again == everything
    _, nobody, _ = await api.call("GET", "/users/999/workflow-conversations", expect=200)
    assert nobody == []
    status, problem, _ = await api.call("GET", "/users/456/workflow-conversations?running=yes")
    assert status == 400 and problem_names(problem) == {"running"}


@pytest.mark.parametrize("running", [False, True])
async def test_list_pagination_follows_link_headers(api: Api, running: bool) -> None:
    made = [await create(api, agent_product_id=1, user_id=8, configuration={"running": i % 3 > 0})
            for i in range(9)]
    expected = [c["id"] for c in reversed(made) if c["configuration"]["running"] or not running]
    url: str | None = "/users/8/workflow-conversations?limit=2" + (
        "&running=true" if running else "")
    seen: list[int] = []
    while url:
        _, page, headers = await api.call("GET", url, expect=200)
        assert len(page) <= 2
        seen.extend(c["id"] for c in page)
        link = headers.get("Link")
        url = link[1:link.index(">")] if link else None
        if url:
            assert ("running=true" in url) is running
    assert seen == expected


@pytest.mark.parametrize(
    ("query", "name"),
    [("limit=0", "limit"), ("limit=501", "limit"), ("limit=x", "limit"),
     ("before=garbage!", "before"),
     (f"before={encode_cursor(datetime.now(UTC), '99999999999999999999')}", "before"),
     (f"before={encode_cursor(datetime.now(UTC), '-1')}", "before")],
)
async def test_list_rejects_bad_query_parameters(api: Api, query: str, name: str) -> None:
    status, problem, _ = await api.call("GET", f"/users/8/workflow-conversations?{query}")
    assert status == 400
    assert problem_names(problem) == {name}


async def test_list_page_size_defaults_to_the_messages_setting(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    client = await aiohttp_client(create_app(settings.replace(messages={"page_default": 3})))
    api = Api(client, await make_key("admin"))
    for _ in range(4):
        await create(api, agent_product_id=1, user_id=3)
    _, page, headers = await api.call("GET", "/users/3/workflow-conversations", expect=200)
    assert len(page) == 3
    assert 'rel="next"' in headers["Link"]


async def test_team_keys_see_and_create_only_their_team(api: Api, api_for: Any) -> None:
    team_a = await api_for(1, "team-a")
    team_b = await api_for(2, "team-b")
    mine = await create(team_a, agent_product_id=1, user_id=60, configuration={"running": True})
    assert mine["team_id"] == 1
    _, unknown, _ = await team_b.call("GET", "/workflow-conversations/987654321", expect=404)
    path = f"/workflow-conversations/{mine['id']}"
    for method, url, body in [("GET", path, None), ("PATCH", path, {"user_id": 61}),
                              ("PATCH", path, {}), ("POST", path + "/connect", {"x": 1})]:
        status, problem, _ = await team_b.call(method, url, body)
        assert status == 404, (method, url)
        assert without_request_id(problem) == without_request_id(unknown)
    for query in ("", "?running=true"):
        _, listed, _ = await team_b.call("GET", f"/users/60/workflow-conversations{query}",
                                         expect=200)
        assert listed == []
        _, listed, _ = await team_a.call("GET", f"/users/60/workflow-conversations{query}",
                                         expect=200)
        assert [c["id"] for c in listed] == [mine["id"]]
    _, unchanged, _ = await api.call("GET", path, expect=200)
    assert unchanged == mine


async def test_requests_without_a_key_are_401(client: TestClient) -> None:
    resp = await client.get("/workflow-conversations/1")
    assert resp.status == 401


@web.middleware
async def as_browser_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stand in for a browser token: the principal of one chat conversation, not an API key."""
    request[PRINCIPAL] = Principal(name="browser", team_id=None, conversation_id=uuid.uuid4())
    return await handler(request)


async def test_browser_token_gets_404_on_every_route(
    settings: Settings, aiohttp_client: Any, make_key: Any, api: Api
) -> None:
    created = await create(api, agent_product_id=1, user_id=5)
    app = create_app(settings)
    app.middlewares.append(as_browser_token)
    browser = Api(await aiohttp_client(app), await make_key("admin"))
    path = f"/workflow-conversations/{created['id']}"
    for method, url, body in [("POST", "/workflow-conversations", SEED_BODY), ("GET", path, None),
                              ("PATCH", path, {"user_id": 1}), ("POST", path + "/connect", {}),
                              ("GET", "/users/5/workflow-conversations", None)]:
        status, _, _ = await browser.call(method, url, body)
        assert status == 404, (method, url)
    _, unchanged, _ = await api.call("GET", path, expect=200)
    assert unchanged == created
