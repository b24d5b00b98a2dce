"""SQL for messages: the seq-assigning insert, keyset pages, idempotency lookups, updates."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

COLUMNS = (
    "id, conversation_id, seq, client_id, content, content_type, filename, type, channel, "
    "status, metadata, created_by, created_at, updated_at"
)

# One statement: bump the conversation's last_seq (its row lock serialises concurrent writers, so
# seqs are unique and gap-free; a rolled-back insert rolls the bump back too), then insert.
INSERT_MESSAGE = f"""
WITH next AS (
    UPDATE conversations SET last_seq = last_seq + 1
    WHERE id = $2
    RETURNING last_seq, channel
)
INSERT INTO messages (id, conversation_id, seq, client_id, content, content_type, filename, type,
                      channel, status, metadata, created_by)
SELECT $1, $2, next.last_seq, $3, $4, $5, $6, $7, next.channel, $8, $9, $10 FROM next
RETURNING {COLUMNS}
"""
SELECT_BY_CLIENT_ID = f"""
SELECT {COLUMNS} FROM messages WHERE conversation_id = $1 AND client_id = $2
"""
_PAGE_WHERE = """
WHERE conversation_id = $1
  AND ($2::bigint IS NULL OR seq < $2)
  AND ($3::bigint IS NULL OR seq > $3)
"""
SELECT_PAGE_DESC = f"SELECT {COLUMNS} FROM messages {_PAGE_WHERE} ORDER BY seq DESC LIMIT $4"
SELECT_PAGE_ASC = f"SELECT {COLUMNS} FROM messages {_PAGE_WHERE} ORDER BY seq ASC LIMIT $4"
UPDATE_MESSAGE = f"""
UPDATE messages
SET status = coalesce($3, status), metadata = coalesce($4, metadata),
    updated_at = clock_timestamp()
WHERE conversation_id = $1 AND id = $2
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
    metadata: dict[str, Any] | None,
) -> asyncpg.Record | None:
    return await conn.fetchrow(UPDATE_MESSAGE, conversation_id, message_id, status, metadata)
