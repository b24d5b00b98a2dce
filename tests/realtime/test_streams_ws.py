"""Streamed messages on websockets: open and append by frame, live deltas in index order on every
instance, resume mid-stream with nothing lost or doubled, gaps filled from Postgres."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from chatserver.app import create_app
from chatserver.appkeys import STREAMS
from chatserver.config import Settings
from chatserver.store import streams as stream_store
from chatserver.store.messages import NewMessage
from chatserver.store.streams import Append
from tests.api.test_streams_api import append, open_stream
from tests.conftest import Api
from tests.realtime.helpers import WAIT, connect, frame_of, next_frame, send
from tests.redis_server import RedisServer


class StreamReader:
    """Reads one socket: every message's text as the socket learnt it, checking that each delta
    frame starts exactly where the text so far ends (none missing, none twice)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.texts: dict[str, str] = {}
        self.next: dict[str, int] = {}
        self.states: dict[str, str] = {}
        self.delta_frames: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, client: TestClient, cid: str, key: str, since: int | None) -> StreamReader:
        reader = cls(await connect(client, cid, key, since=since))
        while (frame := await reader.receive()) is not None and frame["type"] != "ready":
            reader.take(frame)
        reader.task = asyncio.create_task(reader.run())
        return reader

    async def receive(self) -> dict[str, Any] | None:
        msg = await self.ws.receive()
        return orjson.loads(msg.data) if msg.type is aiohttp.WSMsgType.TEXT else None

    async def run(self) -> None:
        while (frame := await self.receive()) is not None:
            self.take(frame)
            self.changed.set()

    def take(self, frame: dict[str, Any]) -> None:
        if frame["type"] in ("message", "message.updated"):
            message = frame["message"]
            self.texts[message["id"]] = message["content"]
            if "stream" in message:
                self.next[message["id"]] = message["stream"]["next_index"]
                self.states[message["id"]] = message["stream"]["state"]
        elif frame["type"] == "message.delta":
            self.delta_frames.append(frame)
            mid = frame["message_id"]
            if frame["index"] != self.next.get(mid):
                self.problems.append(f"delta {frame['index']} after {self.next.get(mid)}")
            self.texts[mid] = self.texts.get(mid, "") + frame["text"]
            self.next[mid] = frame["index"] + frame["count"]

    async def until(self, predicate: Any) -> None:
        async def wait() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), WAIT)

    async def close(self) -> None:
        await self.ws.close()
        if self.task is not None:
            await asyncio.wait_for(self.task, WAIT)


async def all_acked(ws: aiohttp.ClientWebSocketResponse, count: int) -> None:
    """Read until an ack reaches `count`; no error frame on the way."""
    acked = 0
    while acked < count:
        frame = await next_frame(ws)
        assert frame is not None and frame["type"] != "error", frame
        if frame["type"] == "ack":
            acked = frame["next_index"]


async def test_stream_over_the_websocket(api: Api) -> None:
    cid = await api.create_conversation()
    reader = await StreamReader.open(api.client, cid, api.key, since=0)
    agent = await connect(api.client, cid, api.key)
    await frame_of(agent, "ready")
    await send(agent, type="message", content="", stream=True, client_id="answer-1")
    ack = await frame_of(agent, "ack")
    message = ack["message"]
    assert message["stream"] == {"state": "open", "next_index": 0}
    mid = message["id"]
    words = ["Stream", "ing ", "works", "."]
    for i, word in enumerate(words):
        await send(agent, **{"type": "message.delta", "message_id": mid, "index": i, "text": word})
    acks = [(await frame_of(agent, "ack"))["next_index"] for _ in words]
    # Each is acknowledged once durable; one commit may cover the ones sent after it.
    assert acks == sorted(acks) and acks[-1] == 4 and all(n >= i + 1 for i, n in enumerate(acks))
    # A retry is acknowledged again; a gap and a rewrite are refused, naming the index.
    await send(agent, **{"type": "message.delta", "message_id": mid, "index": 3, "text": "."})
    assert (await frame_of(agent, "ack"))["next_index"] == 4
    await send(agent, **{"type": "message.delta", "message_id": mid, "index": 6, "text": "?"})
    error = await frame_of(agent, "error")
    assert error["code"] == "conflict"
    assert error["expected_index"] == 4
    assert error["invalid_params"][0]["name"] == "index"
    await reader.until(lambda: reader.texts.get(mid) == "Streaming works.")
    _, done, _ = await api.call("POST", f"/conversations/{cid}/messages/{mid}/complete",
                                {"content": "Streaming works!"}, expect=200)
    await reader.until(lambda: reader.states.get(mid) == "complete")
    assert reader.texts[mid] == done["content"] == "Streaming works!"
    assert reader.problems == []
    await agent.close()
    await reader.close()


async def test_browser_socket_may_not_stream(api: Api) -> None:
    cid = await api.create_conversation()
    _, token, _ = await api.call("POST", f"/conversations/{cid}/tokens", {"user": "ann"},
                                 expect=201)
    ws = await connect(api.client, cid, token["token"])
    await frame_of(ws, "ready")
    await send(ws, type="message", content="", stream=True)
    error = await frame_of(ws, "error")
    assert error["code"] == "forbidden"
    await ws.close()


async def test_deltas_arriving_together_go_out_as_one_frame(api: Api) -> None:
    cid = await api.create_conversation()
    reader = await StreamReader.open(api.client, cid, api.key, since=0)
    mid = (await open_stream(api, cid))["id"]
    await append(api, cid, mid, *[(i, f"w{i} ") for i in range(10)])
    await reader.until(lambda: reader.next.get(mid) == 10)
    deltas = [f for f in reader.delta_frames if f["message_id"] == mid]
    assert deltas == [{"type": "message.delta", "message_id": mid, "seq": 1, "index": 0,
                       "count": 10, "text": "".join(f"w{i} " for i in range(10))}]
    await reader.close()


@pytest.fixture
def two_instances(settings: Settings, aiohttp_client: Any, make_key: Any,
                  redis_server: RedisServer) -> Any:
    async def make() -> list[Api]:
        config = settings.replace(redis={"url": redis_server.url},
                                  realtime={"gap_wait": 0.1, "reconcile_interval": 0.5})
        key = await make_key("agent")
        return [Api(await aiohttp_client(create_app(config)), key) for _ in range(2)]

    return make


async def agent_writes(api: Api, cid: str, mid: str, words: list[str]) -> None:
    for i, word in enumerate(words):
        await append(api, cid, mid, (i, word))
        await asyncio.sleep(0.005)


async def test_resume_mid_stream_on_another_instance(two_instances: Any) -> None:
    a, b = await two_instances()
    cid = await a.create_conversation()
    await a.post_message(cid, "question")
    steady = await StreamReader.open(b.client, cid, b.key, since=0)
    message = await open_stream(a, cid, "Answer:")
    mid, seq = message["id"], message["seq"]
    words = [f" w{i}" for i in range(80)]
    writing = asyncio.create_task(agent_writes(a, cid, mid, words))
    first = await StreamReader.open(b.client, cid, b.key, since=0)
    await first.until(lambda: first.next.get(mid, 0) >= 20)
    await first.close()
    # Reconnect mid-stream: since below the stream, and since at it (an open stream is sent again).
    below = await StreamReader.open(b.client, cid, b.key, since=seq - 1)
    at = await StreamReader.open(a.client, cid, a.key, since=seq)
    await writing
    _, done, _ = await a.call("POST", f"/conversations/{cid}/messages/{mid}/complete", {},
                              expect=200)
    final = "Answer:" + "".join(words)
    assert done["content"] == final
    for reader in (steady, below, at):
        await reader.until(lambda r=reader: r.states.get(mid) == "complete")
        assert reader.problems == []
        # The text each socket built from deltas, before the final message replaced it.
        built = [f for f in reader.delta_frames if f["message_id"] == mid]
        assert built and built[-1]["index"] + built[-1]["count"] == len(words)
        assert reader.texts[mid] == final
        await reader.close()
    assert first.problems == []


async def test_missing_deltas_are_filled_from_postgres(two_instances: Any, db: Any) -> None:
    a, b = await two_instances()
    cid = await a.create_conversation()
    readers = [await StreamReader.open(api.client, cid, api.key, since=0) for api in (a, b)]
    mid = (await open_stream(a, cid))["id"]
    # As if an instance committed delta 0 and died before publishing it.
    await stream_store.append_deltas(db, [Append(uuid.UUID(hex=cid), uuid.UUID(hex=mid), 0, 1,
                                                 "lost ", [5])])
    await append(b, cid, mid, (1, "found"))  # b reads the stream afresh: next_index 1
    for reader in readers:
        await reader.until(lambda r=reader: r.next.get(mid) == 2)
        assert reader.texts[mid] == "lost found"
        assert reader.problems == []
        await reader.close()


async def test_pipelined_deltas_keep_their_order_while_the_stream_is_read(api: Api) -> None:
    cid = await api.create_conversation()
    mid = (await open_stream(api, cid))["id"]
    # As on an instance that did not open it: the first append reads the stream from Postgres,
    # and the deltas sent meanwhile (without waiting for acks) are applied in the order sent.
    api.client.app[STREAMS].live.clear()
    agent = await connect(api.client, cid, api.key)
    await frame_of(agent, "ready")
    for i in range(40):
        await send(agent, **{"type": "message.delta", "message_id": mid, "index": i,
                             "text": f"{i},"})
        await asyncio.sleep(0.001)  # some arrive during the read, some just after it
    await all_acked(agent, 40)
    [stored] = (await api.call("GET", f"/conversations/{cid}/messages", expect=200))[1]
    assert stored["content"] == "".join(f"{i}," for i in range(40))
    await agent.close()


async def test_a_stream_whose_opening_was_missed_is_not_doubled(
    two_instances: Any, db: Any,
) -> None:
    a, b = await two_instances()
    cid = await a.create_conversation()
    reader = await StreamReader.open(b.client, cid, b.key, since=0)
    # As if the instance that opened it died before publishing: b's room learns of the message
    # from Postgres (with the text committed by then) while its deltas arrive live.
    row = await stream_store.insert_stream(db, NewMessage(
        conversation_id=uuid.UUID(hex=cid), content="", content_type="TEXT", type="AGENT_OUTPUT",
        status="RECEIVED", created_by="agent", stream=True), max_open=4)
    mid = row["id"].hex
    for i, word in enumerate(["a", "b", "c"]):
        await append(b, cid, mid, (i, word))
    await reader.until(lambda: reader.next.get(mid) == 3)
    assert reader.texts[mid] == "abc"
    assert reader.problems == []
    await reader.close()


async def test_a_streaming_socket_may_send_a_frame_per_delta(
    settings: Settings, aiohttp_client: Any, make_key: Any,
) -> None:
    config = settings.replace(limits={"socket_frames_per_second": 1.0, "socket_frame_burst": 3})
    api = Api(await aiohttp_client(create_app(config)), await make_key("agent"))
    cid = await api.create_conversation()
    agent = await connect(api.client, cid, api.key)
    await frame_of(agent, "ready")
    await send(agent, type="message", content="", stream=True)
    mid = (await frame_of(agent, "ack"))["message"]["id"]
    # Past the socket's budget of 1 frame/s: a streaming socket gets [streams] deltas_per_second.
    for i in range(30):
        await send(agent, **{"type": "message.delta", "message_id": mid, "index": i, "text": "x"})
    await all_acked(agent, 30)
    await agent.close()
