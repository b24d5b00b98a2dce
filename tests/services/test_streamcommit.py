"""Group commit of stream deltas on a real Postgres: one UPDATE per stream per commit, whatever the
number of deltas; waiters answered after it; a stream closed meanwhile fails its waiters alone."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from chatserver.services.streamcommit import StreamCommitter
from chatserver.services.streamstate import LiveStream, StreamConflict
from chatserver.store import streams as store
from chatserver.store.messages import NewMessage
from tests.services.test_groupcommit import WAIT, new_conversation


async def open_live(db: asyncpg.Connection, cid: uuid.UUID, content: str = "") -> LiveStream:
    row = await store.insert_stream(db, NewMessage(
        conversation_id=cid, content=content, content_type="TEXT", type="AGENT_OUTPUT",
        status="RECEIVED", created_by="agent", stream=True), max_open=4)
    assert row is not None
    return LiveStream.from_row(await store.get_stream(db, cid, row["id"]), None)


async def test_one_update_per_stream_per_commit(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    cid = await new_conversation(db)
    first, second = await open_live(db, cid, "A:"), await open_live(db, cid)
    commits: list[tuple[int, int]] = []
    committer = StreamCommitter(pool, 0.05, on_commit=lambda s, d: commits.append((s, d)))
    # Applied in one go (as the appends of one loop iteration): one commit carries them all.
    for i in range(40):
        first.apply([f" w{i}"])
        committer.mark(first)
    second.apply(["x", "y"])
    committer.mark(second)
    await asyncio.wait_for(asyncio.gather(first.durable(40), second.durable(2)), WAIT)
    assert commits == [(2, 42)]
    assert first.committed == 40
    stored = await store.get_stream(db, cid, first.message_id)
    assert stored["content"] == "A:" + "".join(f" w{i}" for i in range(40))
    assert stored["stream_next_index"] == 40
    ends = [2]
    for i in range(40):
        ends.append(ends[-1] + len(f" w{i}"))
    assert stored["stream_ends"] == ends
    await committer.close()


async def test_a_stream_closed_meanwhile_fails_alone(
    pool: asyncpg.Pool, db: asyncpg.Connection,
) -> None:
    cid = await new_conversation(db)
    kept, closed = await open_live(db, cid), await open_live(db, cid)
    await store.close_stream(db, cid, closed.message_id, "aborted", "test", None, None, None)
    committer = StreamCommitter(pool, 0.05)
    for live in (kept, closed):
        live.apply(["a", "b"])
        committer.mark(live)
    await asyncio.wait_for(kept.durable(2), WAIT)
    with pytest.raises(StreamConflict):
        await asyncio.wait_for(closed.durable(2), WAIT)
    assert closed.broken is not None
    await committer.close()
