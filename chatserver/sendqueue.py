"""One websocket's bounded send queue and the task that drains it.

The hub only ever calls `offer`, which never blocks: a socket that falls behind first loses its
ephemeral frames (typing, presence), and when only messages are left and the queue is still full it
is closed with 4008, so one slow reader never holds up other sockets or the event loop. While the
socket is replaying history (`syncing`), live frames wait in `pending` and are sent after the replay
without repeating a seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from aiohttp import WSMsgType, web

from chatserver.frames import Kind

log = logging.getLogger("chatserver.ws")

CLOSE_TOO_SLOW = 4008
TOO_SLOW_REASON = "too slow, resume with since"


class SocketSender:
    def __init__(
        self, ws: web.WebSocketResponse, limit: int, *, close_timeout: float,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.ws = ws
        self.limit = limit
        self.close_timeout = close_timeout
        self.transport = transport
        self.queue: deque[tuple[bool, bytes]] = deque()
        self.pending: list[tuple[Kind, int, bytes]] = []
        self.syncing = True
        self.last_seq = 0
        self.dropped = 0
        self.closing = False
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def offer(self, kind: Kind, seq: int, frame: bytes) -> None:
        if self.closing:
            return
        if self.syncing:
            self.pending.append((kind, seq, frame))
            if len(self.pending) > self.limit:
                self.too_slow()
            return
        if kind is Kind.MESSAGE:
            if seq <= self.last_seq:
                return
            self.last_seq = seq
        self.push(frame, ephemeral=kind is Kind.EPHEMERAL)

    def push(self, frame: bytes, *, ephemeral: bool = False) -> None:
        if self.closing:
            return
        if len(self.queue) >= self.limit:
            if ephemeral:
                self.dropped += 1
                return
            if not self._drop_an_ephemeral():
                self.too_slow()
                return
        self.queue.append((ephemeral, frame))
        self._wakeup.set()

    def _drop_an_ephemeral(self) -> bool:
        for i, (ephemeral, _) in enumerate(self.queue):
            if ephemeral:
                del self.queue[i]
                self.dropped += 1
                return True
        return False

    def go_live(self, last_seq: int) -> None:
        """End the replay: live frames above `last_seq` follow, and the writer starts."""
        self.last_seq = last_seq
        self.syncing = False
        pending, self.pending = self.pending, []
        for kind, seq, frame in pending:
            self.offer(kind, seq, frame)
        self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        try:
            while True:
                while not self.queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                _, frame = self.queue.popleft()
                await self.ws.send_frame(frame, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("socket writer stopped: %r", exc)

    def too_slow(self) -> None:
        log.info("closing a websocket that cannot keep up (%d frames queued)", len(self.queue))
        self._closer = asyncio.create_task(self.shut(CLOSE_TOO_SLOW, TOO_SLOW_REASON))

    async def shut(self, code: int, reason: str) -> None:
        """Stop sending and close the socket with `code` (never waits on a full queue)."""
        if self.closing:
            return
        self.closing = True
        self.queue.clear()
        self.pending.clear()
        await self._stop_writer()
        try:
            # Sending the close frame itself waits while the peer reads nothing: bound it.
            async with asyncio.timeout(self.close_timeout):
                await self.ws.close(code=code, message=reason.encode())
        except (ConnectionError, RuntimeError):
            pass
        except TimeoutError:
            log.info("websocket did not answer the close frame; dropping the connection")
            if self.transport is not None:
                self.transport.abort()

    async def stop(self) -> None:
        self.closing = True
        await self._stop_writer()
        if self._closer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._closer

    async def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
