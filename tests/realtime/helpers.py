"""Helpers for websocket tests: connect, read frames of a type, collect message seqs."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from aiohttp.test_utils import TestClient

WAIT = 30.0  # a bound that only a real hang reaches


async def connect(
    client: TestClient, conversation_id: str, key: str | None, *, since: int | None = None,
    **kwargs: Any,
) -> aiohttp.ClientWebSocketResponse:
    params = {"since": str(since)} if since is not None else {}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return await client.ws_connect(
        f"/ws/conversations/{conversation_id}", params=params, headers=headers, **kwargs
    )


async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | None:
    """The next JSON frame, or None when the socket closed."""
    msg = await asyncio.wait_for(ws.receive(), WAIT)
    if msg.type is aiohttp.WSMsgType.TEXT:
        return orjson.loads(msg.data)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.CLOSING), msg
    return None


async def frame_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """Skip frames until one of type `kind`."""
    while True:
        frame = await next_frame(ws)
        assert frame is not None, f"closed before a {kind} frame (code {ws.close_code})"
        if frame["type"] == kind:
            return frame


async def ready(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[int], dict[str, Any]]:
    """Seqs of the replayed messages, and the ready frame."""
    seqs = []
    while True:
        frame = await next_frame(ws)
        assert frame is not None, f"closed before ready (code {ws.close_code})"
        if frame["type"] == "message":
            seqs.append(frame["message"]["seq"])
        elif frame["type"] == "ready":
            return seqs, frame


async def message_seqs(ws: aiohttp.ClientWebSocketResponse, upto: int) -> list[int]:
    """Seqs of `message` frames, in arrival order, until `upto` arrives."""
    seqs: list[int] = []
    while not seqs or seqs[-1] < upto:
        frame = await next_frame(ws)
        assert frame is not None, f"closed after {seqs[-5:]} (code {ws.close_code})"
        if frame["type"] == "message":
            seqs.append(frame["message"]["seq"])
    return seqs


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the socket closes; the code of the server's close frame."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return ws.close_code


async def send(ws: aiohttp.ClientWebSocketResponse, **frame: Any) -> None:
    await ws.send_str(orjson.dumps(frame).decode())


class Watcher:
    """Reads one socket in the background: message seqs in arrival order, acks, other frames."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seqs: list[int] = []
        self.frames: list[dict[str, Any]] = []
        self.acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.close_code: int | None = None
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                self.close_code = int(msg.data)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                self.close_code = self.close_code or self.ws.close_code
                self._changed.set()
                return
            frame = orjson.loads(msg.data)
            if frame["type"] == "message":
                self.seqs.append(frame["message"]["seq"])
            elif frame["type"] == "ack":
                self.acks.put_nowait(frame)
            else:
                self.frames.append(frame)
            self._changed.set()

    async def until(self, predicate: Any) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                if self.task.done() and not predicate():
                    raise AssertionError(f"socket closed ({self.close_code}), got {self.seqs[-5:]}")
                await self._changed.wait()

        await asyncio.wait_for(wait(), WAIT)

    async def has_seq(self, seq: int) -> None:
        await self.until(lambda: self.seqs and self.seqs[-1] >= seq)

    async def closed(self) -> int | None:
        await asyncio.wait_for(asyncio.shield(self.task), WAIT)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self.task, WAIT)


async def watch(
    client: TestClient, conversation_id: str, key: str | None, *, since: int | None = None,
    **kwargs: Any,
) -> Watcher:
    """Connect, wait for ready (keeping replayed seqs), then read in the background."""
    ws = await connect(client, conversation_id, key, since=since, **kwargs)
    replayed, _ = await ready(ws)
    watcher = Watcher(ws)
    watcher.seqs.extend(replayed)
    return watcher
