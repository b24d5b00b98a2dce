"""A stream's states and their transitions, and what one instance knows of a stream it writes to.

    ALLOWED = {open: {complete, aborted}}; complete and aborted are final.

The check is `check_transition`, called with the state just read in the transaction that would
write the new one (the UPDATE itself only matches an open row, so two closers never both win).

`LiveStream` holds an open stream's text as deltas, the part already durable (`committed`), and
the callers waiting for a commit. An append is checked and applied against it synchronously, so
the appends of one instance are ordered and all-or-nothing without a lock.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from chatserver.models import StreamState
from chatserver.problems import Problem
from chatserver.ratelimit import TokenBucket

ALLOWED: dict[StreamState, frozenset[StreamState]] = {
    StreamState.OPEN: frozenset({StreamState.COMPLETE, StreamState.ABORTED}),
    StreamState.COMPLETE: frozenset(),
    StreamState.ABORTED: frozenset(),
}


class StreamConflict(Problem):
    """409 with the index the stream expects next (the problem body's `expected_index`)."""

    def __init__(self, detail: str, expected_index: int | None, name: str = "index") -> None:
        super().__init__(409, detail, title="Stream conflict", code="conflict",
                         invalid_params=[(name, detail)])
        self.expected_index = expected_index

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.expected_index is not None:
            body["expected_index"] = self.expected_index
        return body


def check_transition(current: str | None, new: StreamState, next_index: int | None) -> None:
    """409 unless a stream in `current` may become `new` (None: not a streamed message)."""
    if current is None:
        raise StreamConflict("this message is not streamed", None, name="message_id")
    if new not in ALLOWED[StreamState(current)]:
        raise StreamConflict(f"the stream is {current}", next_index, name="message_id")


@dataclass(frozen=True)
class Delta:
    index: int
    text: str


@dataclass(eq=False)
class LiveStream:
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    seq: int
    author: str
    ends: list[int]  # ends[0]: the opening content's length; ends[i + 1]: where delta i ends
    deltas: list[str]  # the text of each delta, by index
    text_bytes: int  # UTF-8 bytes of the opening content and every delta
    committed: int  # deltas below this index are durable
    bucket: TokenBucket | None
    touched: float = field(default_factory=time.monotonic)
    broken: BaseException | None = None  # a commit failed: the instance forgets this stream
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Any, bucket: TokenBucket | None) -> LiveStream:
        content, ends = row["content"], list(row["stream_ends"])
        deltas = [content[ends[i]:ends[i + 1]] for i in range(len(ends) - 1)]
        return cls(row["conversation_id"], row["id"], row["seq"], row["created_by"], ends, deltas,
                   len(content.encode()), len(deltas), bucket)

    @classmethod
    def opened(cls, row: Any, bucket: TokenBucket | None) -> LiveStream:
        """A stream just opened (`row` as inserted): its opening content, no delta yet."""
        content = row["content"]
        return cls(row["conversation_id"], row["id"], row["seq"], row["created_by"],
                   [len(content)], [], len(content.encode()), 0, bucket)

    @property
    def next_index(self) -> int:
        return len(self.deltas)

    def plan(self, deltas: list[Delta], max_bytes: int) -> list[str]:
        """The texts to append (in order, from `next_index`), or 409/413 with nothing applied.

        Entries below `next_index` must repeat the text already applied (an idempotent retry)."""
        fresh: list[str] = []
        added = 0
        for delta in deltas:
            expected = self.next_index + len(fresh)
            if delta.index < self.next_index:
                if self.deltas[delta.index] != delta.text:
                    raise StreamConflict(
                        f"delta {delta.index} was already applied with other text", expected)
            elif delta.index == expected:
                fresh.append(delta.text)
                added += len(delta.text.encode())
            else:
                raise StreamConflict(
                    f"index {delta.index} does not follow: expected {expected}", expected)
        if self.text_bytes + added > max_bytes:
            raise Problem(413, f"the stream's text would exceed {max_bytes} bytes",
                          code="too_large", invalid_params=[("text", "too large")])
        return fresh

    def apply(self, texts: list[str]) -> None:
        for text in texts:
            self.deltas.append(text)
            self.ends.append(self.ends[-1] + len(text))
            self.text_bytes += len(text.encode())
        self.touched = time.monotonic()

    def durable(self, upto: int) -> asyncio.Future[None]:
        """Resolved once deltas below `upto` are committed (or failed with why they were not)."""
        future = asyncio.get_running_loop().create_future()
        if self.broken is not None:
            future.set_exception(self.broken)
        elif self.committed >= upto:
            future.set_result(None)
        else:
            self.waiters.append((upto, future))
        return future

    def mark_committed(self, upto: int) -> None:
        self.committed = max(self.committed, upto)
        waiting = []
        for needed, future in self.waiters:
            if needed <= self.committed:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((needed, future))
        self.waiters = waiting

    def fail(self, exc: BaseException) -> None:
        self.broken = exc
        waiters, self.waiters = self.waiters, []
        for _, future in waiters:
            if not future.done():
                future.set_exception(exc)
