"""The send queue's policy: ephemeral frames go first, then a socket that cannot keep up is cut.

And its raw write path: shared frame bytes, joined per socket, readable by a real client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from chatserver.realtime.frames import Kind, Outgoing
from chatserver.realtime.sendqueue import (
    CLOSE_TOO_SLOW,
    DEFAULT_BYTE_LIMIT,
    Flusher,
    SocketSender,
)
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


async def test_the_byte_budget_cuts_off_before_the_frame_count() -> None:
    ws = ClosingSocket()
    sender = SocketSender(ws, 1000, close_timeout=1.0, byte_limit=100)  # type: ignore[arg-type]
    sender.syncing = False
    sender.offer(Kind.EPHEMERAL, 0, typing(b"t" * 30))
    sender.offer(Kind.MESSAGE, 1, out(b"a" * 40))
    sender.offer(Kind.MESSAGE, 2, out(b"b" * 40))  # 110 bytes queued: over the budget
    assert sender.queued_bytes == 110 and not sender.closing
    sender.offer(Kind.EPHEMERAL, 0, typing(b"late"))  # full: dropped
    sender.offer(Kind.MESSAGE, 3, out(b"c" * 20))  # the typing frame makes room
    assert queued(sender) == [b"a" * 40, b"b" * 40, b"c" * 20]
    assert sender.queued_bytes == 100 and sender.dropped == 2
    sender.offer(Kind.MESSAGE, 4, out(b"d"))  # only messages left: cut off
    await asyncio.sleep(0)
    await sender.stop()
    assert ws.closed_with == CLOSE_TOO_SLOW
    assert sender.queue == [] and sender.queued_bytes == 0


async def test_the_byte_budget_holds_during_replay() -> None:
    ws = ClosingSocket()
    sender = SocketSender(ws, 1000, close_timeout=1.0, byte_limit=100)  # type: ignore[arg-type]
    for seq in (1, 2, 3):
        sender.offer(Kind.MESSAGE, seq, out(b"x" * 40))
    await asyncio.sleep(0)
    await sender.stop()
    assert ws.closed_with == CLOSE_TOO_SLOW and sender.pending == []


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


Feed = Callable[[SocketSender], Awaitable[None]]


def sender_app(feed: Feed, seen: list[SocketSender], *, compress: bool = False,
               interval: float = 0.0, limit: int = 100,
               byte_limit: int = DEFAULT_BYTE_LIMIT) -> web.Application:
    """A socket whose live SocketSender `feed` offers frames to, then is read until closed."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=compress)
        await ws.prepare(request)
        sender = SocketSender(ws, limit, close_timeout=1.0, byte_limit=byte_limit,
                              flusher=Flusher(interval))
        seen.append(sender)
        sender.go_live(0)
        await feed(sender)
        async for _ in ws:
            pass
        await sender.stop()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    return app


def sizes_app(compress: bool, seen: list[SocketSender], interval: float = 0.0) -> web.Application:
    """A socket that queues one frame of each size in SIZES: half, then (after the first flush
    with a flush interval) the other half."""

    async def feed(sender: SocketSender) -> None:
        shared = [Outgoing(b'"%s"' % (b"x" * max(0, n - 2))) for n in SIZES]
        for seq, frame in enumerate(shared, start=1):
            if seq == len(SIZES) // 2 + 1:
                await asyncio.sleep(0.001)  # the first half is flushed meanwhile
            sender.offer(Kind.MESSAGE, seq, frame)

    return sender_app(feed, seen, compress=compress, interval=interval)


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


async def test_a_backlog_is_written_in_pieces_of_about_the_high_water_mark(
    aiohttp_client: Any,
) -> None:
    """A peer that does not read: the transport keeps at most about twice its high-water mark of
    this socket's joined bytes (a piece is written while the buffer is at most the mark); the rest
    stays queued as the shared frames. Then it reads it all."""
    frames = [Outgoing(b'"%s"' % (b"x" * 20_000)) for _ in range(1000)]  # 20 MB: past the kernel
    seen: list[SocketSender] = []
    offered = asyncio.Event()

    async def feed(sender: SocketSender) -> None:
        for seq, frame in enumerate(frames, start=1):
            sender.offer(Kind.MESSAGE, seq, frame)
            await asyncio.sleep(0)
        offered.set()

    app = sender_app(feed, seen, limit=1000, byte_limit=2**30)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/", max_msg_size=0)
    await asyncio.wait_for(offered.wait(), WAIT)
    sender = seen[0]
    assert sender._raw is not None and sender.queue, "the kernel took all of it: send more"
    high_water = sender._raw.get_write_buffer_limits()[1]
    for _ in range(100):  # the peer reads a little: the transport drains, the backlog moves
        await asyncio.wait_for(ws.receive(), WAIT)
    await asyncio.sleep(0.2)
    assert sender._raw.get_write_buffer_size() <= 2 * high_water + 20_010
    assert sender.queue, "the kernel took all of it: send more"
    for _ in frames[100:]:
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        assert msg.type is WSMsgType.TEXT and len(msg.data) == 20_002
    assert sender.queue == [] and sender.queued_bytes == 0
    await ws.close()
