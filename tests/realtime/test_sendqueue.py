"""The send queue's policy: ephemeral frames go first, then a socket that cannot keep up is cut.

And its raw write path: shared frame bytes, joined per socket, readable by a real client.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from chatserver.realtime.frames import Kind, Outgoing
from chatserver.realtime.sendqueue import CLOSE_TOO_SLOW, Flusher, SocketSender
from tests.realtime.helpers import WAIT


class ClosingSocket:
    """Only records how it was closed (the queue under test is never drained)."""

    def __init__(self) -> None:
        self.closed_with: int | None = None

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed_with = code


def out(payload: bytes) -> Outgoing:
    return Outgoing(payload)


def typing(payload: bytes) -> Outgoing:
    return Outgoing(payload, ephemeral=True)


def queued(sender: SocketSender) -> list[bytes]:
    return [frame.payload for frame in sender.queue]


def live_sender(limit: int) -> tuple[SocketSender, ClosingSocket]:
    ws = ClosingSocket()
    sender = SocketSender(ws, limit, close_timeout=1.0)  # type: ignore[arg-type]
    sender.syncing = False
    return sender, ws


async def test_ephemeral_frames_are_dropped_first() -> None:
    sender, ws = live_sender(3)
    sender.offer(Kind.EPHEMERAL, 0, typing(b"typing-1"))
    sender.offer(Kind.MESSAGE, 1, out(b"m1"))
    sender.offer(Kind.EPHEMERAL, 0, typing(b"typing-2"))
    sender.offer(Kind.EPHEMERAL, 0, typing(b"typing-3"))  # full: dropped
    sender.offer(Kind.MESSAGE, 2, out(b"m2"))  # full: typing-1 makes room
    assert queued(sender) == [b"m1", b"typing-2", b"m2"]
    assert sender.dropped == 2 and not sender.closing
    sender.offer(Kind.MESSAGE, 3, out(b"m3"))  # typing-2 makes room
    sender.offer(Kind.MESSAGE, 4, out(b"m4"))  # only messages left: cut off
    await asyncio.sleep(0)
    await sender.stop()
    assert sender.closing and ws.closed_with == CLOSE_TOO_SLOW


async def test_messages_are_never_repeated_or_sent_backwards() -> None:
    sender, _ = live_sender(10)
    sender.last_seq = 5
    for seq in (4, 5, 6, 6, 7):
        sender.offer(Kind.MESSAGE, seq, out(b"%d" % seq))
    assert queued(sender) == [b"6", b"7"]


async def test_live_frames_wait_during_replay(monkeypatch: Any) -> None:
    ws = ClosingSocket()
    sender = SocketSender(ws, 10, close_timeout=1.0)  # type: ignore[arg-type]
    for seq in (3, 4, 5):
        sender.offer(Kind.MESSAGE, seq, out(b"%d" % seq))
    assert not sender.queue and len(sender.pending) == 3
    monkeypatch.setattr(SocketSender, "_write", _idle)
    sender.go_live(4)  # the replay sent up to 4
    assert queued(sender) == [b"5"]
    await sender.stop()


async def _idle(_sender: SocketSender) -> None:
    await asyncio.Event().wait()


# --- the raw write path, on real sockets -------------------------------------------------------

SIZES = (0, 125, 126, 65_535, 65_536, 200_000)  # each header length, at both of its edges


def sizes_app(compress: bool, seen: list[SocketSender], interval: float = 0.0) -> web.Application:
    """A socket that queues one frame of each size in SIZES: half, then (after the first flush
    with a flush interval) the other half."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=compress)
        await ws.prepare(request)
        sender = SocketSender(ws, 100, close_timeout=1.0, flusher=Flusher(interval))
        seen.append(sender)
        sender.go_live(0)
        shared = [Outgoing(b'"%s"' % (b"x" * max(0, n - 2))) for n in SIZES]
        for seq, frame in enumerate(shared, start=1):
            if seq == len(SIZES) // 2 + 1:
                await asyncio.sleep(0.001)  # the first half is flushed meanwhile
            sender.offer(Kind.MESSAGE, seq, frame)
        async for _ in ws:
            pass
        await sender.stop()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    return app


@pytest.mark.parametrize("compress, interval", [(False, 0.0), (False, 0.05), (True, 0.0)],
                         ids=["raw", "raw-paced", "deflate"])
async def test_frames_of_every_size_arrive_whole_and_in_order(
    aiohttp_client: Any, compress: bool, interval: float
) -> None:
    seen: list[SocketSender] = []
    client = await aiohttp_client(sizes_app(compress, seen, interval))
    ws = await client.ws_connect("/", compress=15 if compress else 0, max_msg_size=0)
    received = []
    for _ in SIZES:
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        assert msg.type is WSMsgType.TEXT, msg
        received.append(len(msg.data.encode()))
    assert received == [max(2, n) for n in SIZES]
    assert (seen[0]._raw is None) == compress  # deflate needs aiohttp's writer, per socket
    await ws.close()
