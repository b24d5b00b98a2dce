"""SQL for streamed messages: open one, append group-committed deltas, close, find idle ones.

Every statement names the message's conversation with its id. A stream's text lives in the
message row: `content` is the text so far and `stream_ends` the character offset where each delta
ends (element 0: where the opening content ends), so delta i is content[ends[i]:ends[i + 1]].
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from chatserver.store.messages import COLUMNS, NEXT_SEQ, NewMessage

OPEN = "open"

LOCK_CONVERSATION = "SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE"
COUNT_OPEN = """
SELECT count(*) FROM messages WHERE conversation_id = $1 AND stream_state = 'open'
"""
# As store.messages.INSERT_MESSAGE, with the stream columns: open, no delta yet.
INSERT_STREAM = NEXT_SEQ + f"""
INSERT INTO messages (id, conversation_id, seq, client_id, content, content_type, filename, type,
                      channel, status, metadata, created_by, author_id, author_kind, author_name,
                      stream_state, stream_next_index, stream_ends, stream_touched_at, run_id)
SELECT $1, $2, next.last_seq, $3, $4, $5, $6, $7, next.channel, $8, $9, $10, $11, $12, $13, 'open',
       0, ARRAY[char_length($4)], clock_timestamp(), $14
FROM next
RETURNING {COLUMNS}
"""
SELECT_STREAM = f"""
SELECT {COLUMNS}, stream_ends FROM messages WHERE conversation_id = $1 AND id = $2
"""
SELECT_OPEN_UPTO = f"""
SELECT {COLUMNS} FROM messages
WHERE conversation_id = $1 AND stream_state = 'open' AND seq <= $2
ORDER BY seq
"""
SELECT_OPEN_CURSORS = """
SELECT conversation_id, id, seq, stream_next_index FROM messages
WHERE conversation_id = ANY($1::uuid[]) AND stream_state = 'open'
"""
# One UPDATE for every stream of a group commit: each row gets its new text and offsets only if it
# is still open at the index this instance appended from (else another writer or a close came
# first, and the row is not returned).
APPEND_DELTAS = """
UPDATE messages m
SET content = m.content || u.text,
    stream_ends = m.stream_ends || u.ends::integer[],
    stream_next_index = u.next_index,
    stream_touched_at = clock_timestamp()
FROM unnest($1::uuid[], $2::uuid[], $3::integer[], $4::integer[], $5::text[], $6::text[])
    AS u(conversation_id, id, from_index, next_index, text, ends)
WHERE m.conversation_id = u.conversation_id AND m.id = u.id
  AND m.stream_state = 'open' AND m.stream_next_index = u.from_index
RETURNING m.id
"""
CLOSE_STREAM = f"""
UPDATE messages
SET stream_state = $3, stream_reason = $4, content = coalesce($5, content),
    status = coalesce($6, status), metadata = coalesce($7, metadata),
    updated_at = clock_timestamp()
WHERE conversation_id = $1 AND id = $2 AND stream_state = 'open'
RETURNING {COLUMNS}
"""
SELECT_RUN_EXISTS = "SELECT 1 FROM runs WHERE id = $1 AND conversation_id = $2"
# The open streams of a run, aborted when its cancel is requested (messages_open_streams).
ABORT_RUN_STREAMS = f"""
UPDATE messages
SET stream_state = 'aborted', stream_reason = $3, updated_at = clock_timestamp()
WHERE conversation_id = $1 AND stream_state = 'open' AND run_id = $2
RETURNING {COLUMNS}
"""
# Idle streams, claimed with SKIP LOCKED so that of several instances sweeping at once each
# aborts a stream once.
ABORT_IDLE = f"""
UPDATE messages
SET stream_state = 'aborted', stream_reason = 'idle', updated_at = clock_timestamp()
WHERE (conversation_id, id) IN (
    SELECT conversation_id, id FROM messages
    WHERE stream_state = 'open'
      AND stream_touched_at < clock_timestamp() - make_interval(secs => $1)
    ORDER BY stream_touched_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)
  AND stream_state = 'open'
RETURNING {COLUMNS}
"""


@dataclass(frozen=True)
class Append:
    """Deltas `from_index` .. `next_index - 1` of one stream, their joined text and end offsets."""

    conversation_id: uuid.UUID
    message_id: uuid.UUID
    from_index: int
    next_index: int
    text: str
    ends: list[int]


class UnknownRun(Exception):
    """A stream names a run its conversation does not have."""

    def __init__(self, run_id: uuid.UUID) -> None:
        super().__init__(f"no run {run_id.hex} in this conversation")


async def abort_run_streams(
    conn: Any, conversation_id: uuid.UUID, run_id: uuid.UUID, reason: str
) -> list[asyncpg.Record]:
    """Abort the run's open streams (inside the transaction that changes the run)."""
    return await conn.fetch(ABORT_RUN_STREAMS, conversation_id, run_id, reason)


async def insert_stream(conn: Any, new: NewMessage, max_open: int) -> asyncpg.Record | None:
    """Open a stream; None when the conversation is gone. Raises `TooManyOpen` over `max_open`.

    The conversation's row is locked first, so two opens never both see room for one more."""
    if await conn.fetchval(LOCK_CONVERSATION, new.conversation_id) is None:
        return None
    if await conn.fetchval(COUNT_OPEN, new.conversation_id) >= max_open:
        raise TooManyOpen(max_open)
    if new.run_id is not None and await conn.fetchval(
            SELECT_RUN_EXISTS, new.run_id, new.conversation_id) is None:
        raise UnknownRun(new.run_id)
    return await conn.fetchrow(
        INSERT_STREAM, uuid.uuid4(), new.conversation_id, new.client_id, new.content,
        new.content_type, new.filename, new.type, new.status, new.metadata or {}, new.created_by,
        new.author_id, new.author_kind, new.author_name, new.run_id,
    )


class TooManyOpen(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} streams are open in this conversation")
        self.limit = limit


async def get_stream(
    conn: Any, conversation_id: uuid.UUID, message_id: uuid.UUID
) -> asyncpg.Record | None:
    """The message with its `stream_ends` (None for a message posted whole)."""
    return await conn.fetchrow(SELECT_STREAM, conversation_id, message_id)


async def get_open_streams(
    conn: Any, conversation_id: uuid.UUID, up_to_seq: int
) -> list[asyncpg.Record]:
    """The conversation's open streams with a seq up to `up_to_seq`, by seq."""
    return await conn.fetch(SELECT_OPEN_UPTO, conversation_id, up_to_seq)


async def get_open_cursors(conn: Any, conversation_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_OPEN_CURSORS, conversation_ids)


async def append_deltas(conn: Any, appends: list[Append]) -> set[uuid.UUID]:
    """Apply every append in one statement; the ids of the streams it applied to."""
    rows = await conn.fetch(
        APPEND_DELTAS, [a.conversation_id for a in appends], [a.message_id for a in appends],
        [a.from_index for a in appends], [a.next_index for a in appends],
        [a.text for a in appends],
        ["{" + ",".join(map(str, a.ends)) + "}" for a in appends],
    )
    return {row["id"] for row in rows}


async def close_stream(
    conn: Any, conversation_id: uuid.UUID, message_id: uuid.UUID, state: str,
    reason: str | None, content: str | None, status: str | None,
    metadata: dict[str, Any] | None,
) -> asyncpg.Record | None:
    """Close an open stream; None when it is not open (or not there)."""
    return await conn.fetchrow(CLOSE_STREAM, conversation_id, message_id, state, reason, content,
                               status, metadata)


async def abort_idle(conn: Any, idle_seconds: float, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(ABORT_IDLE, idle_seconds, limit)
