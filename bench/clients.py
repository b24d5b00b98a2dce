"""Websocket clients of the load generator: one receiving socket, three libraries, two protocols.

Per received frame the generator does as little as it can: one `find` for the timestamp marker
that the publisher put in the message content (`~t<monotonic ns>~`), one counter, and for sampled
sockets one clock read and one append. Everything else (ready, ack, ping) is a rare control frame.

Protocols: "chat" is ours (and the bare peer's): `/ws/conversations/{id}`, a `ready` frame after
connect. "socketio" is Engine.IO v4 + Socket.IO v5 spoken directly over the websocket transport
(`0{...}` open -> we send `40` -> `40{...}` connected, `2` ping -> `3` pong, `42[...]` events).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

MARK = b"~t"
END = b"~"
CONNECT_TIMEOUT = 30.0


@dataclass
class Tally:
    """Counters shared by all sockets of one generator process."""

    ready: int = 0
    failed: int = 0
    closed: int = 0
    acks: int = 0
    errors: int = 0
    latencies: array = field(default_factory=lambda: array("q"))
    ready_event: asyncio.Event = field(default_factory=asyncio.Event)
    ready_target: int = 0

    def mark_ready(self) -> None:
        self.ready += 1
        if self.ready >= self.ready_target:
            self.ready_event.set()


class Receiver:
    """What every socket does with a text frame, whatever library delivered it (as bytes)."""

    def __init__(self, tally: Tally, protocol: str, sample: bool) -> None:
        self.tally = tally
        self.received = 0
        self.acked = 0
        self.latencies = tally.latencies if sample else None
        self.is_socketio = protocol == "socketio"
        self.is_ready = False
        # Set on every message (probes of a room) or ack (websocket publishers); else None.
        self.waiter: asyncio.Event | None = None
        self.send_text: Callable[[bytes], None] = _no_send

    def on_text(self, data: bytes) -> None:
        i = data.find(MARK)
        if i >= 0 and not data.startswith(b'{"type":"ack"') and not data.startswith(b"43"):
            self.received += 1
            if self.latencies is not None:
                j = data.find(END, i + 2)
                self.latencies.append(time.monotonic_ns() - int(data[i + 2 : j]))
            if self.waiter is not None:
                self.waiter.set()
            return
        self.on_control(data)

    def on_control(self, data: bytes) -> None:
        if self.is_socketio:
            self._socketio_control(data)
        elif data.startswith(b'{"type":"ack"'):
            self._acked()
        elif data.startswith(b'{"type":"ready"'):
            self._ready()
        elif data.startswith(b'{"type":"error"'):
            self.tally.errors += 1

    def _socketio_control(self, data: bytes) -> None:
        if data == b"2":
            self.send_text(b"3")
        elif data.startswith(b"0{"):
            self.send_text(b"40")
        elif data.startswith(b"40"):
            self._ready()
        elif data.startswith(b"43"):
            self._acked()
        elif data.startswith(b"44"):
            self.tally.errors += 1

    def _ready(self) -> None:
        if not self.is_ready:
            self.is_ready = True
            self.tally.mark_ready()

    def _acked(self) -> None:
        self.acked += 1
        self.tally.acks += 1
        if self.waiter is not None:
            self.waiter.set()

    def on_closed(self) -> None:
        self.tally.closed += 1


def _no_send(data: bytes) -> None:
    raise RuntimeError("socket not connected")


def socket_url(base: str, protocol: str, room: str) -> str:
    if protocol == "socketio":
        return f"{base}/socket.io/?EIO=4&transport=websocket&room={quote(room)}"
    return f"{base}/ws/conversations/{quote(room)}"


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


# --- picows: a Cython websocket library; the cheapest per frame here --------------------------

def _picows_listener_class() -> type:
    from picows import WSListener, WSMsgType

    text, close = WSMsgType.TEXT, WSMsgType.CLOSE

    class PicowsListener(WSListener):  # type: ignore[misc]
        def __init__(self, receiver: Receiver) -> None:
            super().__init__()
            self.receiver = receiver
            self.on_text = receiver.on_text

        def on_ws_connected(self, transport: Any) -> None:
            self.receiver.send_text = lambda data: transport.send(text, data)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == text:
                self.on_text(frame.get_payload_as_bytes())
            elif frame.msg_type == close:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

        def on_ws_disconnected(self, transport: Any) -> None:
            self.receiver.on_closed()

    return PicowsListener


_PICOWS_LISTENER: type | None = None


async def connect_picows(url: str, receiver: Receiver, headers: dict[str, str],
                         local_addr: tuple[str, int] | None) -> Any:
    from picows import ws_connect

    global _PICOWS_LISTENER
    if _PICOWS_LISTENER is None:
        _PICOWS_LISTENER = _picows_listener_class()
    listener_class = _PICOWS_LISTENER
    extra: dict[str, Any] = {"local_addr": local_addr} if local_addr else {}
    transport, _listener = await ws_connect(
        lambda: listener_class(receiver), url, extra_headers=headers,
        websocket_handshake_timeout=CONNECT_TIMEOUT, read_buffer_init_size=4096, **extra)
    return transport


# --- aiohttp and websockets: measured for comparison (see BENCHMARKS.md) -----------------------

async def connect_aiohttp(url: str, receiver: Receiver, headers: dict[str, str],
                          local_addr: tuple[str, int] | None, *, session: Any,
                          compress: int = 0) -> Any:
    from aiohttp import WSMsgType

    ws = await session.ws_connect(url, headers=headers, compress=compress, autoping=True,
                                  max_msg_size=0)
    receiver.send_text = lambda data: asyncio.ensure_future(ws.send_str(data.decode()))

    async def pump() -> None:
        on_text = receiver.on_text
        try:
            while True:
                msg = await ws.receive()
                if msg.type == WSMsgType.TEXT:
                    on_text(msg.data.encode())
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            receiver.on_closed()

    return ws, asyncio.ensure_future(pump())


async def connect_websockets(url: str, receiver: Receiver, headers: dict[str, str],
                             local_addr: tuple[str, int] | None) -> Any:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    extra: dict[str, Any] = {"local_addr": local_addr} if local_addr else {}
    ws = await connect(url, additional_headers=headers, compression=None, max_size=None,
                       ping_interval=None, open_timeout=CONNECT_TIMEOUT, **extra)
    receiver.send_text = lambda data: asyncio.ensure_future(ws.send(data, text=True))

    async def pump() -> None:
        on_text = receiver.on_text
        try:
            while True:
                on_text(await ws.recv(decode=False))
        except ConnectionClosed:
            pass
        finally:
            receiver.on_closed()

    return ws, asyncio.ensure_future(pump())
