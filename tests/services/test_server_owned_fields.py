"""Server-owned fields: a browser token posts USER_INPUT/RECEIVED, only whitelisted metadata keys;
every filename is a base name. Over the websocket and over REST alike."""

from __future__ import annotations

from typing import Any

import pytest

from chatserver.app import create_app
from chatserver.config import Settings
from tests.auth.test_tokens import mint
from tests.conftest import Api
from tests.realtime.helpers import frame_of, ready, send

TOKEN_REFUSED = [
    ({"status": "PROCESSED"}, "status"),
    ({"status": "FAILED"}, "status"),
    ({"metadata": {"role": "assistant", "approved": True}}, "metadata.role"),
    ({"content_type": "FILE", "filename": "../../etc/passwd"}, "filename"),
    ({"content_type": "FILE", "filename": "..\\..\\windows\\win.ini"}, "filename"),
]


@pytest.mark.parametrize(("extra", "field"), TOKEN_REFUSED)
async def test_token_over_websocket_cannot_set_server_fields(
    api: Api, extra: dict[str, Any], field: str
) -> None:
    cid = await api.create_conversation()
    ws = await api.client.ws_connect(f"/ws/conversations/{cid}?token={await mint(api, cid)}")
    await ready(ws)
    await send(ws, type="message", content="x", client_id="c1", **extra)
    error = await frame_of(ws, "error")
    assert error["code"] == "invalid" and error["client_id"] == "c1"
    assert field in [p["name"] for p in error["invalid_params"]]
    await send(ws, type="message", content="fine", client_id="c2")  # the socket stays open
    ack = await frame_of(ws, "ack")
    assert ack["message"]["type"] == "USER_INPUT" and ack["message"]["status"] == "RECEIVED"
    await ws.close()
    _, history, _ = await api.call("GET", f"/conversations/{cid}/messages", expect=200)
    assert [m["content"] for m in history] == ["fine"]


@pytest.mark.parametrize(
    ("extra", "field"), [*TOKEN_REFUSED, ({"type": "AGENT_OUTPUT"}, "type"),
                         ({"type": "SYSTEM"}, "type")],
)
async def test_token_over_rest_gets_400_naming_the_field(
    api: Api, extra: dict[str, Any], field: str
) -> None:
    cid = await api.create_conversation()
    browser = Api(api.client, await mint(api, cid))
    _, problem, headers = await browser.call(
        "POST", f"/conversations/{cid}/messages", {"content": "x", **extra}, expect=400)
    assert headers["Content-Type"].startswith("application/problem+json")
    assert field in [p["name"] for p in problem["invalid-params"]]


async def test_listed_metadata_keys_are_accepted_from_tokens(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    app = create_app(settings.replace(messages={"token_metadata_keys": ("locale",)}))
    api = Api(await aiohttp_client(app), await make_key("admin"))
    cid = await api.create_conversation()
    browser = Api(api.client, await mint(api, cid))
    url = f"/conversations/{cid}/messages"
    _, message, _ = await browser.call("POST", url, {"content": "x", "metadata": {"locale": "de"}},
                                       expect=201)
    assert message["metadata"] == {"locale": "de"} and message["created_by"] == "alice"
    await browser.call("POST", url, {"content": "x", "metadata": {"approved": True}}, expect=400)


@pytest.mark.parametrize("filename", [
    "a/b.txt", "a\\b.txt", "..", "x..y", "bad\nname", "tab\tname", "del\x7f", "é" * 128,
])
async def test_filenames_are_base_names_for_api_keys_too(api: Api, filename: str) -> None:
    cid = await api.create_conversation()
    _, problem, _ = await api.call("POST", f"/conversations/{cid}/messages",
                                   {"content": "x", "content_type": "FILE", "filename": filename},
                                   expect=400)
    assert [p["name"] for p in problem["invalid-params"]] == ["filename"]


async def test_api_keys_still_set_type_status_and_metadata(api: Api) -> None:
    cid = await api.create_conversation()
    message = await api.post_message(cid, "done", type="AGENT_OUTPUT", status="PROCESSED",
                                     metadata={"approved": True}, content_type="FILE",
                                     filename="report 2026.pdf")
    assert (message["type"], message["status"]) == ("AGENT_OUTPUT", "PROCESSED")
    assert message["filename"] == "report 2026.pdf"
