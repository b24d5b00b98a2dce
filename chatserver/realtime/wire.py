"""Websocket frames as bytes on the wire, built once per message for every socket of a room.

A server never masks its frames (RFC 6455 §5.1), so without per-message compression the bytes of a
text frame are the same for every socket: a 2-, 4- or 10-byte header, then the payload.
"""

from __future__ import annotations

import struct

_TEXT_FIN = 0x81
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame carrying `payload`."""
    size = len(payload)
    if size < 126:
        header = _SHORT.pack(_TEXT_FIN, size)
    elif size < 65536:
        header = _MEDIUM.pack(_TEXT_FIN, 126, size)
    else:
        header = _LONG.pack(_TEXT_FIN, 127, size)
    return header + payload


class Outgoing:
    """A frame's JSON payload, whether it may be dropped for a slow socket (typing, presence), and,
    built on first use and then shared, its wire bytes."""

    __slots__ = ("_wire", "ephemeral", "payload")

    def __init__(self, payload: bytes, *, ephemeral: bool = False) -> None:
        self.payload = payload
        self.ephemeral = ephemeral
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = text_frame(self.payload)
        return self._wire
