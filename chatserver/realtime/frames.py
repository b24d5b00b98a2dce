"""Websocket frames: serialized once with orjson, their bytes on the wire, and the bus envelope.

A server never masks its frames (RFC 6455 §5.1), so without per-message compression the bytes of a
text frame are the same for every socket: a 2-, 4- or 10-byte header, then the payload. `Outgoing`
builds them once per message and every socket of a room shares them.

On the bus a frame travels as `<node>|<kind>|<seq>|<frame json>`: the node id lets an instance skip
its own echoes, the kind and seq let the hub order messages without parsing the JSON.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson


class Kind(StrEnum):
    MESSAGE = "m"  # a new message: delivered in seq order, never dropped
    UPDATE = "u"  # a message changed: delivered after the message itself
    EPHEMERAL = "e"  # typing and presence: dropped first when a socket falls behind
    DELTA = "d"  # deltas of a streamed message: after the message, in index order
    CLOSE = "c"  # a streamed message closed: an update, after the stream's last delta
    READ = "r"  # a read horizon (seq): coalesced per participant, after the message it names


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


def delta_payload(message_id: str, index: int, texts: list[str]) -> bytes:
    """Deltas on the bus: each delta's text kept apart, so rooms can keep them by index."""
    return orjson.dumps({"message_id": message_id, "index": index, "texts": texts})


def parse_delta_payload(payload: bytes) -> tuple[str, int, list[str]]:
    data = orjson.loads(payload)
    return data["message_id"], data["index"], data["texts"]


def message_id_of(updated: bytes) -> str:
    """The message id of a `message.updated` frame (parsed: closes are rare)."""
    return str(orjson.loads(updated)["message"]["id"])
def participant_frame(kind: str, participant: dict[str, Any]) -> bytes:
    """participant.joined or participant.left."""
    return frame(kind, participant=participant)


def read_frame(participant: str, seq: int) -> bytes:
    return frame("read", participant=participant, seq=seq)
def run_frame(run: dict[str, Any]) -> bytes:
    return frame("run.updated", run=run)


def answered_frame(message: dict[str, Any]) -> bytes:
    return frame("action.answered", message_id=message["id"], run_id=message["run_id"],
                 action=message["action"])


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


class DeltaOutgoing(Outgoing):
    """A `message.delta` frame for sockets: deltas `index` .. `index + count - 1` of a message,
    their texts joined. Keeps the texts, so a socket that already has some gets the rest."""

    __slots__ = ("index", "message_id", "seq", "texts")

    def __init__(self, message_id: str, seq: int, index: int, texts: list[str]) -> None:
        super().__init__(frame("message.delta", message_id=message_id, seq=seq, index=index,
                               count=len(texts), text="".join(texts)))
        self.message_id = message_id
        self.seq = seq
        self.index = index
        self.texts = texts

    @property
    def end(self) -> int:
        return self.index + len(self.texts)

    def after(self, index: int) -> DeltaOutgoing:
        """The part from `index` on (`index` inside this frame's range)."""
        return DeltaOutgoing(self.message_id, self.seq, index, self.texts[index - self.index:])
