"""A websocket fuzzer (hypothesis, bounded): random text, random JSON, deeply nested, binary,
invalid UTF-8 and oversized frames against a real server.

A frame the server can read gets error frames (or an ack) and the socket stays usable; binary is
closed with 1003, invalid UTF-8 with 1007, oversized with 1009. Meanwhile a second socket on the
same conversation keeps receiving every message in order.

The upgrade request is fuzzed too: random bytes in Authorization and Sec-WebSocket-Protocol,
random `since` and `token` values; the answer is always an open socket or a documented close code
(4400, 4401, 4403, 4404, 4429), never a dropped connection (1006).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatserver.app import create_app
from chatserver.config import Settings
from tests import rawhttp
from tests.conftest import Api
from tests.realtime.helpers import WAIT, Watcher, closed_with, connect, next_frame, ready, watch

MAX_FRAME = 16_384
EXAMPLES = 60
ALLOWED_FRAMES = {"ack", "error", "message", "message.updated", "typing", "presence",
                  "presence.join", "presence.leave"}
CLOSE_CODES = {"binary": 1003, "bad_utf8": 1007, "oversized": 1009}
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])


@dataclass(frozen=True)
class Fuzz:
    kind: str  # "text" (must not close), or a key of CLOSE_CODES
    data: str | bytes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70).map(lambda n: n if abs(n) < 2**63
                                                                  else str(n))
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=25,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "typing", "nonsense", ""])},
    optional={"content": json_values, "client_id": json_values, "metadata": json_values,
              "content_type": st.sampled_from(["TEXT", "IMAGE", "bogus"]) | json_values,
              "filename": json_values, "status": json_values, "extra": json_values},
)


def nested(depth: int, opener: str) -> Fuzz:
    """A message whose metadata nests `depth` deep: readable text, or oversized past the limit."""
    closer = "]" if opener == "[" else "}"
    inner = '{"a":' if opener == "{" else "["
    text = ('{"type":"message","content":"deep","metadata":{"x":'
            + inner * depth + "1" + closer * depth + "}}")
    return Fuzz("oversized" if len(text.encode()) > MAX_FRAME else "text", text)


def invalid_utf8(parts: tuple[bytes, bytes]) -> bytes:
    return parts[0] + b"\xff\xc0" + parts[1]


frames = st.one_of(
    st.text(max_size=300).map(lambda t: Fuzz("text", t)),
    message_like.map(lambda d: Fuzz("text", orjson.dumps(d).decode())),
    json_values.map(lambda v: Fuzz("text", orjson.dumps(v).decode())),
    st.tuples(st.integers(1, 4000), st.sampled_from(["[", "{"])).map(lambda p: nested(*p)),
    st.binary(max_size=200).map(lambda b: Fuzz("binary", b)),
    st.tuples(st.binary(max_size=20), st.binary(max_size=20)).map(
        lambda p: Fuzz("bad_utf8", invalid_utf8(p))),
    st.integers(MAX_FRAME + 1, MAX_FRAME * 3).map(lambda n: Fuzz("oversized", "x" * n)),
)


class Target:
    """The server under fuzz, one conversation, and a bystander socket that must keep receiving."""

    def __init__(self, api: Api, cid: str, bystander: Watcher) -> None:
        self.api, self.cid, self.bystander = api, cid, bystander
        self.probes = 0

    async def probe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send a good message after the fuzz frame: every frame before its ack must be allowed."""
        self.probes += 1
        client_id = f"probe-{self.probes}"
        await ws.send_str(orjson.dumps({"type": "message", "content": "probe",
                                        "client_id": client_id}).decode())
        while True:
            frame = await next_frame(ws)
            assert frame is not None, f"closed (code {ws.close_code}) on a readable frame"
            assert frame["type"] in ALLOWED_FRAMES, frame
            if frame["type"] == "error":
                assert frame["code"] and frame["detail"], frame
            if frame["type"] == "ack" and frame["client_id"] == client_id:
                await self.bystander.has_seq(frame["message"]["seq"])
                return

    async def still_serving(self) -> None:
        posted = await self.api.post_message(self.cid, "after a closed socket")
        await self.bystander.has_seq(posted["seq"])


@pytest.fixture
async def target(settings: Settings, aiohttp_client: Any, make_key: Any) -> Target:
    app = create_app(settings.replace(realtime={"max_frame_bytes": MAX_FRAME},
                                      limits={"socket_frames_per_second": 0}))
    api = Api(await aiohttp_client(app), await make_key("fuzzer"))
    cid = await api.create_conversation()
    return Target(api, cid, await watch(api.client, cid, api.key))


async def send_raw(ws: aiohttp.ClientWebSocketResponse, fuzz: Fuzz) -> None:
    if fuzz.kind == "binary":
        await ws.send_bytes(fuzz.data)  # type: ignore[arg-type]
    elif fuzz.kind == "bad_utf8":
        # A text frame whose payload is not UTF-8, written below aiohttp's str API.
        await ws._writer.send_frame(fuzz.data, aiohttp.WSMsgType.TEXT)  # type: ignore[arg-type]
    else:
        await ws.send_str(fuzz.data)  # type: ignore[arg-type]


@BOUNDED
@given(fuzz=frames)
async def test_fuzzed_frames_get_errors_or_the_right_close_code(
    target: Target, fuzz: Fuzz
) -> None:
    ws = await connect(target.api.client, target.cid, target.api.key)
    try:
        await ready(ws)
        await send_raw(ws, fuzz)
        if fuzz.kind in CLOSE_CODES:
            assert await closed_with(ws) == CLOSE_CODES[fuzz.kind]
            await target.still_serving()
        else:
            await asyncio.wait_for(target.probe(ws), WAIT)
    finally:
        await ws.close()
    assert not target.bystander.task.done(), "the bystander socket was closed"


# --- the upgrade request: headers and query strings ----------------------------------------------

# What a browser can read: accepted, or closed with one of the documented codes.
# 4429: failed authentications from one address are throttled.
UPGRADE_OUTCOMES = {rawhttp.OPEN, 4400, 4401, 4403, 4404, 4429}


@dataclass(frozen=True)
class Upgrade:
    authorization: bytes | None
    bearer_prefix: bool
    protocol: bytes | None
    query: tuple[tuple[str, str], ...]


upgrades = st.builds(
    Upgrade,
    authorization=st.none() | rawhttp.HEADER_BYTES,
    bearer_prefix=st.booleans(),
    protocol=st.none() | rawhttp.HEADER_BYTES,
    query=st.lists(st.tuples(st.sampled_from(["since", "token"]), rawhttp.QUERY_VALUES),
                   max_size=2).map(tuple),
)


@BOUNDED
@given(upgrade=upgrades)
async def test_fuzzed_upgrade_headers_and_queries_never_drop_the_connection(
    target: Target, upgrade: Upgrade
) -> None:
    key = str(target.api.key).encode()
    headers: rawhttp.Headers = []
    if upgrade.authorization is not None:
        prefix = b"Bearer " + key if upgrade.bearer_prefix else b""
        headers.append((b"Authorization", prefix + upgrade.authorization))
    elif not any(name == "token" for name, _ in upgrade.query):
        headers.append((b"Authorization", b"Bearer " + key))
    if upgrade.protocol is not None:
        headers.append((b"Sec-WebSocket-Protocol", b"bearer." + upgrade.protocol))
    query = "&".join(f"{k}={v}" for k, v in upgrade.query)
    server = target.api.client.server
    outcome = await rawhttp.websocket_close_code(
        server.host, server.port, f"/ws/conversations/{target.cid}?{query}".encode(), headers)
    # An HTTP 4xx instead of the upgrade: aiohttp's parser refuses control characters in headers.
    assert outcome in UPGRADE_OUTCOMES or 400 <= outcome < 500, (upgrade, outcome)
    assert not target.bystander.task.done(), "the bystander socket was closed"
