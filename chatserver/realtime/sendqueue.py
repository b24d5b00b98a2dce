"""One websocket's bounded send queue, and how its frames reach the socket.

The hub only ever calls `offer`, which never blocks: a socket that falls behind first loses its
ephemeral frames (typing, presence), and when only messages are left and the queue is still full it
is closed with 4008, so one slow reader never holds up other sockets or the event loop. Full means
`limit` frames (`[realtime] send_queue_size`) or `byte_limit` bytes of payload
(`[realtime] send_queue_bytes`), whichever comes first: a few large messages cut off a socket that
does not read as surely as many small ones, so what one such socket holds is bounded in bytes.
While the socket is replaying history (`syncing`), live frames wait in `pending` and are sent after
the replay without repeating a seq.

Without per-message compression (the default) frames skip aiohttp's writer: a room builds each
frame's bytes once (`chatserver.realtime.frames`), every socket queues that same object, and the
`Flusher` writes each socket's queued frames with ONE `transport.write` of their joined bytes, at
the next loop iteration but at most once per `fanout_flush_interval`. While the transport's buffer
is above its high-water mark (the peer reads slower than we write), frames stay queued, one task
per such socket waits for the transport to drain and writes the backlog in pieces of about the
high-water mark (so a socket's own copy of joined bytes stays that small), and the limits above
apply to what is still queued. With
compression negotiated, frames go one by one through `WebSocketResponse.send_frame` from a writer
task, since each socket's deflate stream makes its bytes its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from chatserver.realtime.frames import DeltaOutgoing, Kind, Outgoing

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008
DEFAULT_BYTE_LIMIT = 1_048_576  # `[realtime] send_queue_bytes`
TOO_SLOW_REASON = "too slow, resume with since"


class Flusher:
    """Writes the frames sockets queued, with one write per socket per flush.

    A flush runs at the next event-loop iteration, but never sooner than `interval` seconds after
    the previous one: under a stream of messages each socket then gets one write per interval
    carrying all of them (a `send()` per socket is the cost of a fan-out), while a message after
    a quiet spell goes out at once.
    """

    def __init__(self, interval: float = 0.0) -> None:
        self.interval = interval
        self._dirty: list[SocketSender] = []
        self._deferred: list[Callable[[], None]] = []
        self._scheduled = False
        self._last = float("-inf")

    def mark(self, sender: SocketSender) -> None:
        self._dirty.append(sender)
        self._schedule()

    def defer(self, callback: Callable[[], None]) -> None:
        """Run `callback` at the start of the next flush, before the sockets are written (a room
        emits the stream deltas gathered meanwhile as one frame per stream)."""
        self._deferred.append(callback)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            due = self._last + self.interval
            if due <= loop.time():
                loop.call_soon(self._run)
            else:
                loop.call_at(due, self._run)

    def _run(self) -> None:
        self._last = asyncio.get_running_loop().time()
        deferred, self._deferred = self._deferred, []
        for callback in deferred:
            callback()  # the sockets it queues frames on join this flush
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for sender in dirty:
            sender.flush()


def raw_path(ws: web.WebSocketResponse) -> tuple[asyncio.Transport, Callable[[], Awaitable[None]]]:
    """The socket's transport and its drain, when frames may be written as shared raw bytes.

    Raises LookupError when they may not: compression was negotiated, or aiohttp's internals are
    not what this was written against (aiohttp 3.14), in which case the sender uses `send_frame`.
    """
    writer: Any = getattr(ws, "_writer", None)
    payload_writer: Any = getattr(ws, "_payload_writer", None)
    transport = getattr(writer, "transport", None)
    if ws.compress or transport is None or not hasattr(payload_writer, "drain"):
        raise LookupError("no raw write path")
    return transport, payload_writer.drain


class SocketSender:
    # Slots: one of these per open socket (see the idle-socket memory figures in BENCHMARKS.md).
    __slots__ = ("_closer", "_drain", "_high_water", "_marked", "_raw", "_wakeup", "_writer",
                 "byte_limit", "close_timeout", "closing", "cursors", "dropped", "flusher",
                 "last_seq", "limit", "pending", "queue", "queued_bytes", "syncing", "transport",
                 "ws")

    def __init__(
        self, ws: web.WebSocketResponse, limit: int, *, close_timeout: float,
        byte_limit: int = DEFAULT_BYTE_LIMIT, transport: asyncio.Transport | None = None,
        flusher: Flusher | None = None,
    ) -> None:
        self.ws = ws
        self.limit = limit
        self.byte_limit = byte_limit
        self.queued_bytes = 0  # payload bytes in `queue`, or in `pending` while syncing
        self.close_timeout = close_timeout
        self.transport = transport  # to abort a connection that ignores our close frame
        self.flusher = flusher  # None: frames always go through ws.send_frame
        # A list, not a deque: it is empty nearly always, and an empty deque costs ~600 bytes.
        # The frames themselves, shared with the room's other sockets: queueing one allocates
        # nothing (a tuple per socket per message was most of what the GC had to walk).
        self.queue: list[Outgoing] = []
        self.pending: list[tuple[Kind, int, Outgoing]] = []
        self.syncing = True
        self.last_seq = 0
        # Streams this socket got by replay: message id -> the delta index its text reaches.
        self.cursors: dict[str, int] | None = None
        self.dropped = 0
        self.closing = False
        self._raw: asyncio.Transport | None = None
        self._drain: Callable[[], Awaitable[None]] | None = None
        self._high_water = 0
        self._marked = False
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def offer(self, kind: Kind, seq: int, frame: Outgoing) -> None:
        if self.closing:
            return
        if self.syncing:
            self.pending.append((kind, seq, frame))
            self.queued_bytes += len(frame.payload)
            if len(self.pending) > self.limit or self.queued_bytes > self.byte_limit:
                self.too_slow()
            return
        if kind is Kind.MESSAGE:
            if seq <= self.last_seq:
                return
            self.last_seq = seq
        elif kind is Kind.DELTA and self.cursors is not None:
            trimmed = self._trim(typing.cast(DeltaOutgoing, frame))
            if trimmed is None:
                return
            frame = trimmed
        if len(self.queue) >= self.limit or self.queued_bytes >= self.byte_limit:
            self._enqueue(frame)  # the full-queue policy
            return
        # The common case, once per socket per message: keep it short.
        self.queue.append(frame)
        self.queued_bytes += len(frame.payload)
        if not self._marked:
            self._kick()

    def push(self, payload: bytes, *, ephemeral: bool = False) -> None:
        """Queue a frame for this socket only (acks, errors, the presence list)."""
        self._enqueue(Outgoing(payload, ephemeral=ephemeral))

    def _enqueue(self, frame: Outgoing) -> None:
        if self.closing:
            return
        if self._full():
            if frame.ephemeral:
                self.dropped += 1
                return
            while self._full() and self._drop_an_ephemeral():
                pass
            if self._full():
                self.too_slow()
                return
        self.queue.append(frame)
        self.queued_bytes += len(frame.payload)
        self._kick()

    def _full(self) -> bool:
        return len(self.queue) >= self.limit or self.queued_bytes >= self.byte_limit

    def _drop_an_ephemeral(self) -> bool:
        for i, queued in enumerate(self.queue):
            if queued.ephemeral:
                del self.queue[i]
                self.queued_bytes -= len(queued.payload)
                self.dropped += 1
                return True
        return False

    def _kick(self) -> None:
        if self._raw is not None:
            # A draining socket's task writes the queue itself when the transport is ready.
            if not self._marked and self._writer is None and self.flusher is not None:
                self._marked = True
                self.flusher.mark(self)
        elif self._wakeup is not None:
            self._wakeup.set()

    def _trim(self, frame: DeltaOutgoing) -> DeltaOutgoing | None:
        """The part of `frame` this socket lacks (None: it has all of it)."""
        assert self.cursors is not None
        have = self.cursors.get(frame.message_id)
        if have is None:
            return frame
        if frame.end <= have:
            return None
        self.cursors[frame.message_id] = frame.end
        return frame if frame.index >= have else frame.after(have)

    def go_live(
        self, last_seq: int, cursors: dict[str, int] | None = None,
        catch_up: list[DeltaOutgoing] | None = None,
    ) -> None:
        """End the replay: live frames above `last_seq` follow, and sending starts.

        `cursors`: the delta index each replayed stream's text reaches; `catch_up`: the deltas
        from there that the room had taken before this socket joined. Deltas the socket has are
        not sent again."""
        self._choose_path()
        self.last_seq = last_seq
        self.syncing = False
        self.cursors = cursors or None
        pending = [(Kind.DELTA, f.seq, typing.cast(Outgoing, f)) for f in catch_up or ()]
        pending += self.pending
        self.pending = []
        self.queued_bytes = 0
        for kind, seq, frame in pending:
            self.offer(kind, seq, frame)
        if self._raw is None:
            self._wakeup = asyncio.Event()
            self._writer = asyncio.create_task(self._write())
        elif self.queue:
            self._kick()

    def _choose_path(self) -> None:
        if self.flusher is None:
            return
        try:
            self._raw, self._drain = raw_path(self.ws)
        except LookupError:
            return
        self._high_water = self._raw.get_write_buffer_limits()[1]

    # --- raw path --------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every queued frame with one transport.write, unless the peer is behind."""
        self._marked = False
        transport = self._raw
        if self.closing or not self.queue or transport is None or self._writer is not None:
            return
        if self.ws.closed or transport.is_closing():
            return  # the connection is going; the socket's handler cleans up
        if transport.get_write_buffer_size() <= self._high_water:
            self._write_queue(transport)
        if self.queue:
            self._writer = asyncio.create_task(self._drain_then_write(transport))

    def _write_queue(self, transport: asyncio.Transport) -> None:
        """Hand the queued frames to the transport, at most about its high-water mark at a time.

        The joined bytes are this socket's own copy, kept by the transport until the peer reads
        them: writing a backlog in high-water-sized pieces (the rest stays queued as the frames
        every socket shares) bounds that copy for a socket that does not read.
        """
        queue = self.queue
        if self.queued_bytes <= self._high_water:  # the common case: everything at once
            # bytes.join of a single item returns that item: no copy.
            data = b"".join([frame.wire for frame in queue])
            queue.clear()
            self.queued_bytes = 0
        else:
            count, size = 1, len(queue[0].payload)
            while count < len(queue) and size + len(queue[count].payload) <= self._high_water:
                size += len(queue[count].payload)
                count += 1
            data = b"".join([frame.wire for frame in queue[:count]])
            del queue[:count]
            self.queued_bytes -= size
        transport.write(data)

    async def _drain_then_write(self, transport: asyncio.Transport) -> None:
        assert self._drain is not None
        try:
            while self.queue and not self.closing:
                await self._drain()
                if self.ws.closed or transport.is_closing():
                    return
                self._write_queue(transport)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("socket drain stopped: %r", exc)
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None

    # --- send_frame path (compression negotiated) ------------------------------------------------

    async def _write(self) -> None:
        assert self._wakeup is not None
        try:
            while True:
                while not self.queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                frame = self.queue.pop(0)
                self.queued_bytes -= len(frame.payload)
                await self.ws.send_frame(frame.payload, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("socket writer stopped: %r", exc)

    # --- closing ---------------------------------------------------------------------------------

    def too_slow(self) -> None:
        log.info("closing a websocket that cannot keep up (%d frames, %d bytes queued)",
                 len(self.queue) + len(self.pending), self.queued_bytes)
        self.close_soon(CLOSE_TOO_SLOW, TOO_SLOW_REASON)

    def close_soon(self, code: int, reason: str) -> None:
        """`shut` from code that cannot wait for it (`stop` does); once."""
        if self._closer is None:
            self._closer = asyncio.create_task(self.shut(code, reason))

    async def shut(self, code: int, reason: str, *, hear_back: bool = True) -> None:
        """Stop sending and close the socket with `code` (never waits on a full queue).

        `hear_back=False` sends the close frame and then drops the connection instead of waiting
        for the peer's close frame: waiting means reading (and parsing) whatever a flooding
        peer sends until then, for up to `close_timeout` seconds.
        """
        if self.closing:
            return
        self.closing = True
        self._release()
        await self._stop_writer()
        if not hear_back and self.transport is not None:
            # Runs once ws.close below has written the close frame; close() flushes it.
            asyncio.get_running_loop().call_soon(self.transport.close)
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
        self._release()
        await self._stop_writer()
        if self._closer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._closer

    def _release(self) -> None:
        """Drop every queued frame now: a closing socket must not keep a burst's bytes alive."""
        self.queue.clear()
        self.pending.clear()
        self.queued_bytes = 0

    async def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
