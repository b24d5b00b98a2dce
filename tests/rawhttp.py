"""HTTP/1.1 requests written byte by byte, for what aiohttp's client will not send: header values
that are not UTF-8, raw query strings, control characters in a path; a websocket upgrade read
down to the server's close frame; and hypothesis strategies for such headers and queries."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from urllib.parse import quote

import orjson
from hypothesis import strategies as st

from tests.realtime.helpers import WAIT

Headers = list[tuple[bytes, bytes]]
ABNORMAL_CLOSE = 1006  # what a browser reports when the connection drops without a close frame
OPEN = 0  # the server accepted the socket and sent a frame

# For fuzzing: header values of any bytes but the ones that would end the header line, and query
# values (Unicode text, escapes that decode to bytes that are not UTF-8, Unicode digits, numbers
# out of range) ready to put after `name=`.
HEADER_BYTES = st.binary(max_size=60).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"").strip())
QUERY_VALUES = st.one_of(
    st.text(max_size=30).map(lambda t: quote(t, safe="")),
    st.binary(max_size=30).map(lambda b: quote(b, safe="")),
    st.sampled_from(["%C2%B2", "%E2%91%A0", "%D9%A3", "%EF%BC%91", "-1", "0", "1", "1e3",
                     "9223372036854775808", "1" * 40, "true", "null"]),
)


async def _exchange(host: str, port: int, head: bytes, body: bytes = b"") -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter, int, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head + body)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), WAIT)
    status = int(status_line.split()[1]) if status_line else 0
    head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT) if status else b""
    return reader, writer, status, head_bytes


def _head(method: str, target: bytes, host: str, headers: Headers, body: bytes) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: " + host.encode(),
             b"Connection: close", b"Content-Length: " + str(len(body)).encode()]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def request(
    host: str, port: int, method: str, target: bytes, headers: Headers, body: bytes = b"",
) -> tuple[int, object]:
    """The status and the decoded JSON body (None if none) of one raw request."""
    reader, writer, status, _ = await _exchange(
        host, port, _head(method, target, host, headers, body), body)
    try:
        payload = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
    try:
        return status, orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        return status, payload


async def websocket_close_code(host: str, port: int, target: bytes, headers: Headers) -> int:
    """Upgrade, then read the server's first frame: the code of its close frame (1006 if the
    connection dropped without one), OPEN if it is a text frame (the socket was accepted), or the
    HTTP status if there was no upgrade."""
    key = base64.b64encode(os.urandom(16))
    upgrade = [(b"Upgrade", b"websocket"), (b"Sec-WebSocket-Key", key),
               (b"Sec-WebSocket-Version", b"13")]
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: " + host.encode(), b"Connection: Upgrade"]
    lines += [name + b": " + value for name, value in upgrade + headers]
    reader, writer, status, _ = await _exchange(host, port, b"\r\n".join(lines) + b"\r\n\r\n")
    try:
        if status != 101:
            return status
        while True:
            try:
                first, second = await asyncio.wait_for(reader.readexactly(2), WAIT)
            except asyncio.IncompleteReadError:
                return ABNORMAL_CLOSE
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await reader.readexactly(8))[0]
            payload = await reader.readexactly(length)
            if first & 0x0F == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if first & 0x0F == 0x1:
                return OPEN
    finally:
        writer.close()
