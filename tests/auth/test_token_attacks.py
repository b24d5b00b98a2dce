"""Forged browser tokens: tampered, expired, `alg: none`, wrong audience or algorithm, another
secret — each refused on the websocket (4401) and on REST (401); another conversation's token
gets 4404."""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import orjson
import pytest

from chatserver.app import create_app
from chatserver.auth.tokens import AUDIENCE
from chatserver.config import Settings
from tests.conftest import Api
from tests.realtime.helpers import closed_with, ready

SECRET = "a-test-secret-" + "x" * 64  # long enough for HS512 too


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(cid: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"aud": AUDIENCE, "sub": "mallory", "cid": cid, "team": None, "iat": now,
            "exp": now + 600, **changes}


def unsigned(payload: dict[str, Any]) -> str:
    header = b64(orjson.dumps({"alg": "none", "typ": "JWT"}))
    return f"{header}.{b64(orjson.dumps(payload))}."


def tampered_payload(cid: str) -> str:
    good = jwt.encode(claims(cid), SECRET, algorithm="HS256")
    header, _, signature = good.split(".")
    return f"{header}.{b64(orjson.dumps(claims(cid, sub='admin', team=None)))}.{signature}"


def flipped_signature(cid: str) -> str:
    good = jwt.encode(claims(cid), SECRET, algorithm="HS256")
    head, signature = good.rsplit(".", 1)
    return f"{head}.{('A' if signature[0] != 'A' else 'B')}{signature[1:]}"


FORGERIES = {
    "alg none": lambda cid: unsigned(claims(cid)),
    "alg none, empty signature segment dropped": lambda cid: unsigned(claims(cid))[:-1],
    "tampered payload": tampered_payload,
    "flipped signature": flipped_signature,
    "expired": lambda cid: jwt.encode(claims(cid, exp=int(time.time()) - 5), SECRET, "HS256"),
    "wrong audience": lambda cid: jwt.encode(claims(cid, aud="elsewhere"), SECRET, "HS256"),
    "no audience": lambda cid: jwt.encode(
        {k: v for k, v in claims(cid).items() if k != "aud"}, SECRET, "HS256"),
    "no expiry": lambda cid: jwt.encode(
        {k: v for k, v in claims(cid).items() if k != "exp"}, SECRET, "HS256"),
    "another secret": lambda cid: jwt.encode(claims(cid), SECRET + "x", "HS256"),
    "another algorithm": lambda cid: jwt.encode(claims(cid), SECRET, "HS512"),
    "garbage": lambda cid: "not-a-token",
}


@pytest.fixture
async def api(settings: Settings, aiohttp_client: Any, make_key: Any) -> Api:
    app = create_app(settings.replace(realtime={"token_secret": SECRET}))
    return Api(await aiohttp_client(app), await make_key("admin"))


@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_forged_tokens_are_refused(api: Api, forgery: str) -> None:
    cid = await api.create_conversation()
    token = FORGERIES[forgery](cid)
    ws = await api.client.ws_connect(f"/ws/conversations/{cid}", params={"token": token})
    assert await closed_with(ws) == 4401
    status, _, _ = await api.call("GET", f"/conversations/{cid}/messages",
                                  headers={"Authorization": f"Bearer {token}"})
    assert status == 401


async def test_a_genuine_token_works_and_is_bound_to_its_conversation(api: Api) -> None:
    cid, other = await api.create_conversation(), await api.create_conversation()
    token = jwt.encode(claims(cid), SECRET, algorithm="HS256")
    ws = await api.client.ws_connect(f"/ws/conversations/{cid}", params={"token": token})
    await ready(ws)
    await ws.close()
    ws = await api.client.ws_connect(f"/ws/conversations/{other}", params={"token": token})
    assert await closed_with(ws) == 4404
    status, _, _ = await api.call("GET", f"/conversations/{other}/messages",
                                  headers={"Authorization": f"Bearer {token}"})
    assert status == 404
