"""Websocket frames: serialized once with orjson, and the envelope that carries them on the bus.

On the bus a frame travels as `<node>|<kind>|<seq>|<frame json>`: the node id lets an instance skip
its own echoes, the kind and seq let the hub order messages without parsing the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson


class Kind(StrEnum):
    MESSAGE = "m"  # a new message: delivered in seq order, never dropped
    UPDATE = "u"  # a message changed: delivered after the message itself
    EPHEMERAL = "e"  # typing and presence: dropped first when a socket falls behind


@dataclass(frozen=True)
class Envelope:
    node: str
    kind: Kind
    seq: int
    frame: bytes

    def encode(self) -> bytes:
        return b"%s|%s|%d|%s" % (self.node.encode(), self.kind.encode(), self.seq, self.frame)

    @classmethod
    def decode(cls, payload: bytes) -> Envelope:
        node, kind, seq, frame = payload.split(b"|", 3)
        return cls(node.decode(), Kind(kind.decode()), int(seq), frame)


def frame(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, **fields})


def message_frame(message: dict[str, Any]) -> bytes:
    return frame("message", message=message)


def updated_frame(message: dict[str, Any]) -> bytes:
    return frame("message.updated", message=message)
