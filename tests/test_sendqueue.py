"""The send queue's policy: ephemeral frames go first, then a socket that cannot keep up is cut."""

from __future__ import annotations

import asyncio
from typing import Any

from chatserver.frames import Kind
from chatserver.sendqueue import CLOSE_TOO_SLOW, SocketSender


class ClosingSocket:
    """Only records how it was closed (the queue under test is never drained)."""

    def __init__(self) -> None:
        self.closed_with: int | None = None

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed_with = code


def live_sender(limit: int) -> tuple[SocketSender, ClosingSocket]:
    ws = ClosingSocket()
    sender = SocketSender(ws, limit, close_timeout=1.0)  # type: ignore[arg-type]
    sender.syncing = False
    return sender, ws


async def test_ephemeral_frames_are_dropped_first() -> None:
    sender, ws = live_sender(3)
    sender.offer(Kind.EPHEMERAL, 0, b"typing-1")
    sender.offer(Kind.MESSAGE, 1, b"m1")
    sender.offer(Kind.EPHEMERAL, 0, b"typing-2")
    sender.offer(Kind.EPHEMERAL, 0, b"typing-3")  # full: dropped
    sender.offer(Kind.MESSAGE, 2, b"m2")  # full: typing-1 makes room
    assert [f for _, f in sender.queue] == [b"m1", b"typing-2", b"m2"]
    assert sender.dropped == 2 and not sender.closing
    sender.offer(Kind.MESSAGE, 3, b"m3")  # typing-2 makes room
    sender.offer(Kind.MESSAGE, 4, b"m4")  # only messages left: cut off
    await asyncio.sleep(0)
    await sender.stop()
    assert sender.closing and ws.closed_with == CLOSE_TOO_SLOW


async def test_messages_are_never_repeated_or_sent_backwards() -> None:
    sender, _ = live_sender(10)
    sender.last_seq = 5
    for seq in (4, 5, 6, 6, 7):
        sender.offer(Kind.MESSAGE, seq, b"%d" % seq)
    assert [f for _, f in sender.queue] == [b"6", b"7"]


async def test_live_frames_wait_during_replay(monkeypatch: Any) -> None:
    ws = ClosingSocket()
    sender = SocketSender(ws, 10, close_timeout=1.0)  # type: ignore[arg-type]
    for seq in (3, 4, 5):
        sender.offer(Kind.MESSAGE, seq, b"%d" % seq)
    assert not sender.queue and len(sender.pending) == 3
    monkeypatch.setattr(sender, "_write", _idle)
    sender.go_live(4)  # the replay sent up to 4
    assert [f for _, f in sender.queue] == [b"5"]
    await sender.stop()


async def _idle() -> None:
    await asyncio.Event().wait()
