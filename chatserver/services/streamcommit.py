"""Group commit of stream deltas: one UPDATE per stream per commit, at most one commit per interval.

Appends mark their stream dirty. A commit starts at once when the previous one started at least
`interval` seconds ago, else when that much time has passed: under load every open stream's new
deltas of the last interval go out in ONE statement (one row update per stream, whatever the
number of deltas) and one commit; a lone delta after a quiet spell is committed at once. Callers
wait on `LiveStream.durable` and are answered after the commit.

A stream whose row no longer matches (closed meanwhile, or appended to through another instance)
fails its waiters with a 409 naming the index the row expects; a database error fails the waiters
of every stream in the batch. Either way the instance forgets that stream's state and reads it
again on the next append.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from chatserver.db.errors import TRANSIENT_ERRORS
from chatserver.services.streamstate import LiveStream, StreamConflict
from chatserver.store import streams as store
from chatserver.store.streams import Append

log = logging.getLogger(__name__)


class StreamCommitter:
    def __init__(
        self, pool: asyncpg.Pool, interval: float, *,
        on_commit: Callable[[int, int], None] | None = None,
    ) -> None:
        self.pool = pool
        self.interval = interval
        self.on_commit = on_commit  # metrics: (streams, deltas) once per commit
        self._dirty: dict[LiveStream, None] = {}  # insertion-ordered set
        self._task: asyncio.Task[None] | None = None
        self._last_start = float("-inf")

    def mark(self, live: LiveStream) -> None:
        self._dirty[live] = None
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._dirty:
                delay = self._last_start + self.interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._last_start = loop.time()
                batch, self._dirty = list(self._dirty), {}
                await self._commit(batch)
        finally:
            self._task = None

    async def _commit(self, batch: list[LiveStream]) -> None:
        appends = [_append(live) for live in batch if live.broken is None]
        pending = [live for live in batch if live.broken is None]
        if not appends:
            return
        try:
            async with self.pool.acquire() as conn:
                applied = await store.append_deltas(conn, appends)
        except TRANSIENT_ERRORS as exc:
            log.warning("committing deltas of %d streams failed: %r", len(pending), exc)
            for live in pending:
                live.fail(exc)
            return
        except BaseException as exc:
            for live in pending:
                live.fail(ConnectionError(f"commit interrupted: {exc!r}"))
            raise
        for live, append in zip(pending, appends, strict=True):
            if live.message_id in applied:
                live.mark_committed(append.next_index)
            else:
                live.fail(StreamConflict(
                    "the stream was closed or appended to elsewhere meanwhile; read it again",
                    None))
        if self.on_commit is not None:
            self.on_commit(len(applied), sum(a.next_index - a.from_index for a in appends))

    async def close(self) -> None:
        """Commit what is marked (on shutdown), then stop."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def _append(live: LiveStream) -> Append:
    start, end = live.committed, live.next_index
    return Append(live.conversation_id, live.message_id, start, end,
                  "".join(live.deltas[start:end]), live.ends[start + 1:end + 1])
