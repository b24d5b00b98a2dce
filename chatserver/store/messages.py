"""SQL for messages: the seq-assigning inserts (one or a batch), keyset pages, idempotency lookups,
updates."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

COLUMNS = (
    "id, conversation_id, seq, client_id, content, content_type, filename, type, channel, "
    "status, metadata, created_by, author_id, author_kind, author_name, created_at, updated_at, "
    "stream_state, stream_next_index, stream_reason, run_id, action"
)

# One statement: bump the conversation's last_seq (its row lock serialises concurrent writers, so
# seqs are unique and gap-free; a rolled-back insert rolls the bump back too), then insert.
NEXT_SEQ = """
WITH next AS (
    UPDATE conversations SET last_seq = last_seq + 1
    WHERE id = $2
    RETURNING last_seq, channel
)
"""
INSERT_MESSAGE = NEXT_SEQ + f"""
INSERT INTO messages (id, conversation_id, seq, client_id, content, content_type, filename, type,
                      channel, status, metadata, created_by, author_id, author_kind, author_name,
                      run_id, action)
SELECT $1, $2, next.last_seq, $3, $4, $5, $6, $7, next.channel, $8, $9, $10, $11, $12, $13,
       $14, $15
FROM next
RETURNING {COLUMNS}
"""
# A batch in one statement, for any mix of conversations. A message whose (conversation, client_id)
# is already stored is not inserted: the stored row comes back with created = false. The others:
# lock their conversations in id order (so two batches never deadlock), add each one's count to
# its last_seq, number its messages in input order above the old last_seq, insert, and come back
# with created = true. A message whose conversation is gone gets no row at all.
INSERT_MESSAGES = f"""
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::jsonb[], $10::text[], $11::text[],
                         $12::text[], $13::text[])
        WITH ORDINALITY AS i(id, conversation_id, client_id, content, content_type, filename,
                             type, status, metadata, created_by, author_id, author_kind,
                             author_name, n)
),
stored AS (  -- one probe of messages_client_id_unique per key (never a scan of messages)
    SELECT m.* FROM input i CROSS JOIN LATERAL (
        SELECT {COLUMNS} FROM messages
        WHERE conversation_id = i.conversation_id AND client_id = i.client_id) m
    WHERE i.client_id IS NOT NULL
),
fresh AS (
    SELECT * FROM input i WHERE NOT EXISTS (
        SELECT 1 FROM stored s
        WHERE s.conversation_id = i.conversation_id AND s.client_id = i.client_id)
),
locked AS (
    SELECT id FROM conversations WHERE id IN (SELECT conversation_id FROM fresh)
    ORDER BY id FOR NO KEY UPDATE
),
counts AS (
    SELECT conversation_id, count(*) AS n FROM fresh GROUP BY conversation_id
),
bumped AS (
    UPDATE conversations c SET last_seq = c.last_seq + counts.n
    FROM counts JOIN locked ON locked.id = counts.conversation_id
    WHERE c.id = counts.conversation_id
    RETURNING c.id, c.last_seq - counts.n AS base, c.channel,
              c.config ->> 'on_input_during_run' AS input_policy
),
inserted AS (
    INSERT INTO messages (id, conversation_id, seq, client_id, content, content_type, filename,
                          type, channel, status, metadata, created_by, author_id, author_kind,
                          author_name)
    SELECT f.id, f.conversation_id,
           b.base + row_number() OVER (PARTITION BY f.conversation_id ORDER BY f.n),
           f.client_id, f.content, f.content_type, f.filename, f.type, b.channel, f.status,
           f.metadata, f.created_by, f.author_id, f.author_kind, f.author_name
    FROM fresh f JOIN bumped b ON b.id = f.conversation_id
    RETURNING {COLUMNS}
)
SELECT true AS created, i.*, b.input_policy
FROM inserted i JOIN bumped b ON b.id = i.conversation_id
UNION ALL
SELECT false AS created, s.*, NULL FROM stored s
"""
SELECT_BY_CLIENT_ID = f"""
SELECT {COLUMNS} FROM messages WHERE conversation_id = $1 AND client_id = $2
"""
# No bound is the widest bound (seqs start at 1), never `$2 IS NULL OR seq < $2`: a generic plan
# (plan_cache_mode = auto after a few executions) can then still seek to the bounds in
# messages_seq_unique instead of walking the whole conversation and filtering.
_PAGE_WHERE = """
WHERE conversation_id = $1
  AND seq < coalesce($2::bigint, 9223372036854775807)
  AND seq > coalesce($3::bigint, 0)
"""
SELECT_PAGE_DESC = f"SELECT {COLUMNS} FROM messages {_PAGE_WHERE} ORDER BY seq DESC LIMIT $4"
SELECT_PAGE_ASC = f"SELECT {COLUMNS} FROM messages {_PAGE_WHERE} ORDER BY seq ASC LIMIT $4"
UPDATE_MESSAGE = f"""
UPDATE messages
SET status = coalesce($3, status), metadata = coalesce($4, metadata),
    updated_at = clock_timestamp()
WHERE conversation_id = $1 AND id = $2
  AND ($5::text IS NULL OR (author_kind = 'agent' AND author_id = $5))  -- an agent: its own only
RETURNING {COLUMNS}
"""


@dataclass(frozen=True)
class NewMessage:
    conversation_id: uuid.UUID
    content: str
    content_type: str
    type: str
    status: str
    created_by: str
    filename: str | None = None
    client_id: str | None = None
    metadata: dict[str, Any] | None = None
    # Who wrote it (chatserver.services.participants.author_for); None: rendered from created_by.
    author_id: str | None = None
    author_kind: str | None = None
    author_name: str | None = None
    stream: bool = False  # open a stream (chatserver.services.streams), not a whole message
    run_id: uuid.UUID | None = None  # the run it belongs to (chatserver.services.runs)
    action: dict[str, Any] | None = None  # a question to the human (needs run_id)

    def same_request(self, row: Any) -> bool:
        """Whether a stored message is what this request would have written (idempotent replay)."""
        return (
            row["content"] == self.content
            and row["content_type"] == self.content_type
            and row["type"] == self.type
            and row["filename"] == self.filename
            and row["metadata"] == (self.metadata or {})
        )


async def insert_message(conn: Any, new: NewMessage) -> asyncpg.Record | None:
    """Insert with the next seq; None if the conversation does not exist."""
    return await conn.fetchrow(
        INSERT_MESSAGE, uuid.uuid4(), new.conversation_id, new.client_id, new.content,
        new.content_type, new.filename, new.type, new.status, new.metadata or {}, new.created_by,
        new.author_id, new.author_kind, new.author_name, new.run_id, new.action,
    )


async def insert_messages(conn: Any, batch: list[NewMessage]) -> list[asyncpg.Record]:
    """Insert a batch with one statement: rows in no particular order, each with `created`
    (False: a message already stored under that client_id; see INSERT_MESSAGES).

    At most one message per (conversation, client_id) in a batch."""
    return await conn.fetch(INSERT_MESSAGES, *insert_messages_args(batch))


def insert_messages_args(batch: list[NewMessage]) -> tuple[list[Any], ...]:
    """INSERT_MESSAGES' parameters: one array per column, a new id for each message."""
    return (
        [uuid.uuid4() for _ in batch], [m.conversation_id for m in batch],
        [m.client_id for m in batch], [m.content for m in batch],
        [m.content_type for m in batch], [m.filename for m in batch], [m.type for m in batch],
        [m.status for m in batch], [m.metadata or {} for m in batch],
        [m.created_by for m in batch], [m.author_id for m in batch],
        [m.author_kind for m in batch], [m.author_name for m in batch],
    )


async def get_by_client_id(
    conn: Any, conversation_id: uuid.UUID, client_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_BY_CLIENT_ID, conversation_id, client_id)


async def list_messages(
    conn: Any, conversation_id: uuid.UUID, *, before: int | None, after: int | None,
    limit: int, ascending: bool,
) -> list[asyncpg.Record]:
    query = SELECT_PAGE_ASC if ascending else SELECT_PAGE_DESC
    return await conn.fetch(query, conversation_id, before, after, limit)


async def update_message(
    conn: Any, conversation_id: uuid.UUID, message_id: uuid.UUID, status: str | None,
    metadata: dict[str, Any] | None, agent: str | None = None,
) -> asyncpg.Record | None:
    """The updated row; None when there is no such message (or, for `agent`, not its own)."""
    return await conn.fetchrow(UPDATE_MESSAGE, conversation_id, message_id, status, metadata,
                               agent)
