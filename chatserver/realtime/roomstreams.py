"""A room's open streams: which delta index each expects next, early arrivals, and the text so far.

Deltas reach a room from this instance's appends, from the bus, or from Postgres when some are
late. Per stream the room keeps the next index it expects and takes deltas strictly in index order
(earlier ones are duplicates, later ones wait in `early` while the hub fills the gap from
Postgres). Taken deltas wait in `unsent` until the room's next emit, so those that arrive within
one flush interval go out as one frame (`index` the first, `count` how many). The texts taken are
kept while the stream is open, so a socket that resumes mid-stream gets what it lacks from memory.

A room knows the streams open when it opened (read from Postgres) and any stream opened later
(seq above the room's starting seq): a delta for any other message is stale and ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chatserver.realtime.frames import DeltaOutgoing


@dataclass
class StreamCursor:
    seq: int
    start: int  # the index of texts[0]
    texts: list[str] = field(default_factory=list)
    early: dict[int, str] = field(default_factory=dict)
    unsent_from: int | None = None  # index of the first taken delta not yet emitted
    floor: int = 0  # its message went out with the text up to here (read from Postgres)
    closed: bool = False

    @property
    def next(self) -> int:
        return self.start + len(self.texts)


class RoomStreams:
    def __init__(self) -> None:
        self.cursors: dict[str, StreamCursor] = {}
        self.closed: set[str] = set()  # streams that closed while the room was open
        self.opened_seq: int | None = None

    def start(self, opened_seq: int, open_rows: Sequence[Any]) -> None:
        """The room's starting seq, and the streams open then (id, seq, stream_next_index)."""
        self.opened_seq = opened_seq
        for row in open_rows:
            self.cursors.setdefault(row["id"].hex,
                                    StreamCursor(row["seq"], row["stream_next_index"]))

    def take(self, message_id: str, seq: int, index: int, texts: list[str]) -> bool:
        """Take deltas `index`...; True when some wait for an earlier one (a gap to fill)."""
        cursor = self.cursors.get(message_id)
        if cursor is None:
            if self.opened_seq is None or seq <= self.opened_seq or message_id in self.closed:
                return False  # closed before the room opened, or since: stale
            cursor = self.cursors[message_id] = StreamCursor(seq, 0)
        if cursor.closed:
            return False
        for offset, text in enumerate(texts):
            if index + offset >= cursor.next:
                cursor.early[index + offset] = text
        while cursor.next in cursor.early:
            if cursor.unsent_from is None:
                cursor.unsent_from = cursor.next
            cursor.texts.append(cursor.early.pop(cursor.next))
        return bool(cursor.early)

    def sent_with_text(self, message_id: str, seq: int, next_index: int) -> None:
        """The stream's message goes out read from Postgres, with the text of the deltas below
        `next_index`: those are not sent again as deltas."""
        if self.opened_seq is None or message_id in self.closed:
            return
        cursor = self.cursors.get(message_id)
        if cursor is None:
            if seq <= self.opened_seq:
                return
            cursor = self.cursors[message_id] = StreamCursor(seq, 0)
        cursor.floor = max(cursor.floor, next_index)

    def missing(self, message_id: str) -> int | None:
        """The index a stream waits for, when later ones arrived first."""
        cursor = self.cursors.get(message_id)
        return cursor.next if cursor is not None and cursor.early else None

    def unsent(self, delivered: int) -> list[DeltaOutgoing]:
        """One frame per stream with deltas not yet emitted whose message went out (seq at most
        `delivered`); closed streams whose last deltas went out are forgotten."""
        frames = []
        for message_id, cursor in list(self.cursors.items()):
            if cursor.seq > delivered:
                continue
            first = max(cursor.unsent_from or 0, cursor.floor)
            if cursor.unsent_from is not None and first < cursor.next:
                frames.append(DeltaOutgoing(message_id, cursor.seq, first,
                                            cursor.texts[first - cursor.start:]))
            cursor.unsent_from = None
            if cursor.closed:
                del self.cursors[message_id]
                self.closed.add(message_id)
        return frames

    def has_unsent(self) -> bool:
        return any(c.unsent_from is not None for c in self.cursors.values())

    def close(self, message_id: str) -> None:
        """The stream closed: no more deltas; what is unsent still goes out (before the close)."""
        cursor = self.cursors.get(message_id)
        if cursor is None:
            self.closed.add(message_id)
        else:
            cursor.closed = True
            cursor.early.clear()

    def catch_up(self, message_id: str, index: int) -> DeltaOutgoing | None:
        """The texts taken from `index` on, for a socket that has the text up to it."""
        cursor = self.cursors.get(message_id)
        if cursor is None or not cursor.start <= index < cursor.next:
            return None
        return DeltaOutgoing(message_id, cursor.seq, index, cursor.texts[index - cursor.start:])
