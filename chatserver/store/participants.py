"""SQL for participants: upserts, removal, read horizons, and the conversation list by participant.

Every statement names its conversation; team scoping is done by the caller's conversation lookup.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

COLUMNS = "conversation_id, id, kind, name, role, metadata, joined_at, last_read_seq, left_at"

# Taken before a participant row when a webhook event follows, in the order a message batch locks
# (conversation, then its participants), so the two never deadlock.
LOCK_CONVERSATION = "SELECT id FROM conversations WHERE id = $1 FOR NO KEY UPDATE"
SELECT_PARTICIPANTS = f"""
SELECT {COLUMNS} FROM participants WHERE conversation_id = $1 AND left_at IS NULL
ORDER BY joined_at, id
"""
# Also a removed one (left_at set): the caller tells "removed" from "never seen".
SELECT_PARTICIPANT = f"SELECT {COLUMNS} FROM participants WHERE conversation_id = $1 AND id = $2"
SELECT_PARTICIPANT_FOR_UPDATE = SELECT_PARTICIPANT + " FOR UPDATE"
# Create, update, or bring a removed participant back (as new: joined now, nothing read).
# An unchanged current row is not rewritten, so duplicate PUTs are idempotent and cheap.
UPSERT_PARTICIPANT = f"""
INSERT INTO participants AS p (conversation_id, id, kind, name, role, metadata)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (conversation_id, id) DO UPDATE
SET kind = EXCLUDED.kind, name = EXCLUDED.name, role = EXCLUDED.role, metadata = EXCLUDED.metadata,
    left_at = NULL,
    joined_at = CASE WHEN p.left_at IS NULL THEN p.joined_at ELSE clock_timestamp() END,
    last_read_seq = CASE WHEN p.left_at IS NULL THEN p.last_read_seq ELSE 0 END
WHERE p.left_at IS NOT NULL OR (p.kind, p.name, p.role, p.metadata)
      IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.name, EXCLUDED.role, EXCLUDED.metadata)
RETURNING {COLUMNS}
"""
REMOVE_PARTICIPANT = f"""
UPDATE participants SET left_at = clock_timestamp()
WHERE conversation_id = $1 AND id = $2 AND left_at IS NULL
RETURNING {COLUMNS}
"""
# Move a horizon forward: a lower seq changes nothing. One statement: the participant (team-scoped
# by $4, NULL for any), the conversation's last_seq (the caller refuses a seq above it), and
# `moved`, the new horizon or NULL when it did not move. No row: no such current participant.
MARK_READ = """
WITH horizon AS (
    SELECT p.conversation_id, p.id, p.kind, p.name, p.role, p.metadata, p.joined_at,
           p.last_read_seq, p.left_at, c.last_seq
    FROM participants p JOIN conversations c ON c.id = p.conversation_id
    WHERE p.conversation_id = $1 AND p.id = $2 AND p.left_at IS NULL
      AND ($4::bigint IS NULL OR c.team_id = $4)
),
moved AS (
    UPDATE participants p SET last_read_seq = $3
    FROM horizon
    -- p.last_read_seq, not the CTE's: a concurrent mark that committed first is re-read
    WHERE p.conversation_id = $1 AND p.id = $2 AND p.last_read_seq < $3
      AND $3 <= horizon.last_seq
    RETURNING p.last_read_seq
)
SELECT horizon.*, (SELECT last_read_seq FROM moved) AS moved FROM horizon
"""
# Posting moves the author's own horizon to the message (your own messages count as read).
# Called in the posting transaction, after the insert locked the conversations.
ADVANCE_OWN = """
UPDATE participants p SET last_read_seq = a.seq
FROM (SELECT conversation_id, author_id, max(seq) AS seq
      FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS x(conversation_id, author_id, seq)
      GROUP BY conversation_id, author_id) a
WHERE p.conversation_id = a.conversation_id AND p.id = a.author_id AND p.last_read_seq < a.seq
  AND p.left_at IS NULL
"""
# Which of these (conversation, participant) pairs still exist (the sockets' credential re-check).
SELECT_PRESENT = """
SELECT p.conversation_id, p.id, p.kind, p.name, p.role
FROM unnest($1::uuid[], $2::text[]) AS x(conversation_id, id)
JOIN participants p ON p.conversation_id = x.conversation_id AND p.id = x.id
WHERE p.left_at IS NULL
"""
# The conversations a participant is in, newest activity first (its last message, else its
# creation), each with its unread count by seq arithmetic and its last message: one probe of
# messages_seq_unique per conversation (seq = last_seq), never a scan of its messages.
SELECT_CONVERSATIONS_OF = """
WITH mine AS (
    SELECT c.id, c.channel, c.usecase, c.config, c.metadata, c.team_id, c.last_seq,
           c.created_at, c.updated_at, p.last_read_seq,
           greatest(c.last_seq - p.last_read_seq, 0) AS unread_count,
           m.id AS m_id, m.seq AS m_seq, m.client_id AS m_client_id, m.content AS m_content,
           m.content_type AS m_content_type, m.filename AS m_filename, m.type AS m_type,
           m.channel AS m_channel, m.status AS m_status, m.metadata AS m_metadata,
           m.created_by AS m_created_by, m.author_id AS m_author_id,
           m.author_kind AS m_author_kind, m.author_name AS m_author_name,
           m.created_at AS m_created_at, m.updated_at AS m_updated_at,
           m.stream_state AS m_stream_state, m.stream_next_index AS m_stream_next_index,
           m.stream_reason AS m_stream_reason, m.run_id AS m_run_id, m.action AS m_action,
           coalesce(m.created_at, c.created_at) AS activity_at
    FROM participants p
    JOIN conversations c ON c.id = p.conversation_id
    -- LIMIT 1 keeps this a probe per conversation: without it the planner may flatten the
    -- lateral into a hash join over every message (it did at 10,000 conversations).
    LEFT JOIN LATERAL (
        SELECT * FROM messages WHERE conversation_id = c.id AND seq = c.last_seq LIMIT 1
    ) m ON c.last_seq > 0
    WHERE p.id = $1 AND p.left_at IS NULL AND ($2::bigint IS NULL OR c.team_id = $2)
)
SELECT * FROM mine
WHERE $3::timestamptz IS NULL OR (activity_at, id) < ($3, $4::uuid)
ORDER BY activity_at DESC, id DESC
LIMIT $5
"""


async def lock_conversation(conn: Any, conversation_id: uuid.UUID) -> None:
    await conn.execute(LOCK_CONVERSATION, conversation_id)


async def list_participants(conn: Any, conversation_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_PARTICIPANTS, conversation_id)


async def get_participant(
    conn: Any, conversation_id: uuid.UUID, participant_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    """The row, also a removed one (see `left_at`); `lock`: FOR UPDATE (in a transaction)."""
    query = SELECT_PARTICIPANT_FOR_UPDATE if lock else SELECT_PARTICIPANT
    return await conn.fetchrow(query, conversation_id, participant_id)


async def upsert_participant(
    conn: Any, conversation_id: uuid.UUID, participant_id: str, kind: str, name: str, role: str,
    metadata: dict[str, Any],
) -> asyncpg.Record | None:
    """The row as written; None when it was current and unchanged."""
    return await conn.fetchrow(UPSERT_PARTICIPANT, conversation_id, participant_id, kind, name,
                               role, metadata)


async def remove_participant(
    conn: Any, conversation_id: uuid.UUID, participant_id: str
) -> asyncpg.Record | None:
    """The removed row; None when there was no current participant of that id."""
    return await conn.fetchrow(REMOVE_PARTICIPANT, conversation_id, participant_id)


async def mark_read(
    conn: Any, conversation_id: uuid.UUID, participant_id: str, seq: int, team_id: int | None,
) -> asyncpg.Record | None:
    """The participant as it was, the conversation's `last_seq`, and `moved` (the new horizon,
    or None when it did not move)."""
    return await conn.fetchrow(MARK_READ, conversation_id, participant_id, seq, team_id)


async def advance_own_horizons(conn: Any, rows: list[Any]) -> None:
    """Move each participant author's horizon to its newest message among `rows`."""
    authored = [r for r in rows if r["author_kind"] in ("user", "agent", "operator")]
    if authored:
        await conn.execute(
            ADVANCE_OWN, [r["conversation_id"] for r in authored],
            [r["author_id"] for r in authored], [r["seq"] for r in authored],
        )


async def present_among(
    conn: Any, pairs: list[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], asyncpg.Record]:
    rows = await conn.fetch(SELECT_PRESENT, [c for c, _ in pairs], [p for _, p in pairs])
    return {(r["conversation_id"], r["id"]): r for r in rows}


async def list_conversations_of(
    conn: Any, participant_id: str, team_id: int | None, before: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    activity_at, conversation_id = before if before else (None, None)
    return await conn.fetch(SELECT_CONVERSATIONS_OF, participant_id, team_id, activity_at,
                            conversation_id, limit)
