"""One websocket's client frames in flight: started in the order read, a bounded number at once.

A client that sends several messages without waiting for each ack (a server-side integration, a
burst of pasted lines) gets them handled together: each frame is handled by a task started in the
order the frames were read, so the messages reach the group committer in that order (and get
increasing seqs, see `chatserver.services.groupcommit`), often in one transaction. The socket
is read again only while fewer than `[limits] socket_frames_in_flight` frames are being handled.

A frame's handler answers its own errors with error frames; an exception it lets escape (a
database error, a bug) closes the socket through `on_failure` and is raised again by `finish`, as
it would have been had the frame been handled inline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class FramePipeline:
    __slots__ = ("error", "limit", "on_failure", "tasks")  # one per open socket

    def __init__(self, limit: int, on_failure: Callable[[BaseException], None]) -> None:
        self.limit = max(limit, 1)
        self.on_failure = on_failure
        self.tasks: set[asyncio.Task[None]] = set()
        self.error: BaseException | None = None

    async def start(self, handling: Coroutine[Any, Any, None]) -> None:
        """Start handling a frame, after waiting for room when `limit` frames are in flight."""
        while len(self.tasks) >= self.limit:
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(handling)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved even when it is not the first (no asyncio warning)
        if error is not None and self.error is None:
            self.error = error
            self.on_failure(error)

    async def finish(self) -> None:
        """Wait for the frames in flight; raise the first failure, if any."""
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.error is not None:
            raise self.error
