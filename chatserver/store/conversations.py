"""SQL for conversations. `$team` parameters scope a query to one team; NULL means any (admin)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

COLUMNS = "id, channel, usecase, config, metadata, team_id, last_seq, created_at, updated_at"

INSERT_CONVERSATION = f"""
INSERT INTO conversations (id, channel, usecase, config, metadata, team_id)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING {COLUMNS}
"""
# Team scoping lives in the WHERE clause, so another team's id and an unknown id take one path.
SELECT_CONVERSATION = f"""
SELECT {COLUMNS} FROM conversations
WHERE id = $1 AND ($2::bigint IS NULL OR team_id = $2)
"""
SELECT_CONVERSATIONS_PAGE = f"""
SELECT {COLUMNS} FROM conversations
WHERE ($1::bigint IS NULL OR team_id = $1)
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4
"""
SELECT_CONVERSATION_FOR_UPDATE = SELECT_CONVERSATION + " FOR UPDATE"
UPDATE_CONVERSATION = f"""
UPDATE conversations SET config = $2, metadata = $3, updated_at = clock_timestamp()
WHERE id = $1
RETURNING {COLUMNS}
"""


async def create_conversation(
    conn: Any, channel: str, usecase: str, config: dict[str, Any], metadata: dict[str, Any],
    team_id: int | None,
) -> asyncpg.Record:
    return await conn.fetchrow(
        INSERT_CONVERSATION, uuid.uuid4(), channel, usecase, config, metadata, team_id
    )


async def get_conversation(
    conn: Any, conversation_id: uuid.UUID, team_id: int | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_CONVERSATION, conversation_id, team_id)


async def list_conversations(
    conn: Any, team_id: int | None, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[asyncpg.Record]:
    created_at, conv_id = before if before else (None, None)
    return await conn.fetch(SELECT_CONVERSATIONS_PAGE, team_id, created_at, conv_id, limit)


async def get_conversation_for_update(
    conn: Any, conversation_id: uuid.UUID, team_id: int | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_CONVERSATION_FOR_UPDATE, conversation_id, team_id)


async def update_conversation(
    conn: Any, conversation_id: uuid.UUID, config: dict[str, Any], metadata: dict[str, Any]
) -> asyncpg.Record:
    return await conn.fetchrow(UPDATE_CONVERSATION, conversation_id, config, metadata)


SELECT_LAST_SEQS = "SELECT id, last_seq FROM conversations WHERE id = ANY($1::uuid[])"


async def get_last_seqs(conn: Any, conversation_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    """Many conversations' last_seq in one query (the hub's reconciliation)."""
    return await conn.fetch(SELECT_LAST_SEQS, conversation_ids)
