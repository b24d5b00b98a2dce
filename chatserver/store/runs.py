"""SQL for runs: create, read, pages, the locked read a change starts with, the change itself,
cancel requests, the stale sweep's candidates, and the messages that belong to a run."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from chatserver.store.messages import COLUMNS as MESSAGE_COLUMNS

COLUMNS = (
    "id, conversation_id, agent, status, input_seq, metadata, error, activity, queued_behind, "
    "cancel_requested_at, seq, version, created_by, created_at, started_at, ended_at, updated_at"
)
ENDED = "('completed', 'failed', 'cancelled')"

# Every change of a run starts here: the conversation row is locked (as a message insert locks it),
# so last_seq is exactly the seq of the last message committed before the change, and webhook rows
# queue in commit order with the messages'.
LOCK_CONVERSATION = """
SELECT last_seq, config ->> 'on_input_during_run' AS on_input FROM conversations
WHERE id = $1 AND ($2::bigint IS NULL OR team_id = $2)
FOR NO KEY UPDATE
"""
SELECT_POLICIES = """
SELECT id, config ->> 'on_input_during_run' AS policy FROM conversations WHERE id = ANY($1::uuid[])
"""
INSERT_RUN = f"""
INSERT INTO runs (id, conversation_id, agent, status, input_seq, metadata, queued_behind, seq,
                  created_by)
VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8)
RETURNING {COLUMNS}
"""
SELECT_RUN = f"SELECT {COLUMNS} FROM runs WHERE id = $1 AND conversation_id = $2"
SELECT_RUN_FOR_UPDATE = SELECT_RUN + " FOR UPDATE"
SELECT_RUN_STATUS = "SELECT status FROM runs WHERE id = $1"
# The newest run that has not ended (a new run queues behind it under `enqueue`).
SELECT_NEWEST_UNENDED = """
SELECT id FROM runs WHERE conversation_id = $1 AND ended_at IS NULL
ORDER BY created_at DESC, id DESC LIMIT 1
"""
# queued or running: what `reject` refuses a user's message for and `interrupt` cancels.
SELECT_WORKING_IDS = """
SELECT id FROM runs WHERE conversation_id = $1 AND ended_at IS NULL
  AND status IN ('queued', 'running')
"""
SELECT_RUNS_PAGE = f"""
SELECT {COLUMNS} FROM runs
WHERE conversation_id = $1
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4
"""
SELECT_RUNS_SINCE = f"""
SELECT {COLUMNS} FROM runs WHERE conversation_id = $1 AND seq >= $2 ORDER BY seq, version
"""
# One change: the new status (or the same), error and activity; timestamps follow the status.
UPDATE_RUN = f"""
UPDATE runs SET
    status = $3,
    error = CASE WHEN $4::boolean THEN $5::jsonb ELSE error END,
    activity = CASE WHEN $6::boolean THEN $7::text ELSE activity END,
    seq = $8, version = version + 1, updated_at = clock_timestamp(),
    status_at = CASE WHEN status <> $3 THEN clock_timestamp() ELSE status_at END,
    started_at = CASE WHEN $3 = 'running' THEN coalesce(started_at, clock_timestamp())
                      ELSE started_at END,
    ended_at = CASE WHEN $3 IN {ENDED} THEN clock_timestamp() ELSE NULL END
WHERE id = $1 AND conversation_id = $2
RETURNING {COLUMNS}
"""
REQUEST_CANCEL = f"""
UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, clock_timestamp()),
    seq = $3, version = version + 1, updated_at = clock_timestamp()
WHERE id = $1 AND conversation_id = $2
RETURNING {COLUMNS}
"""
# Started runs (running, requires_action) whose status has not changed since the cutoff, oldest
# first (read without locks: each is then changed in its own transaction, which checks again under
# the row lock). A queued run is not stale: under `enqueue` it may wait long for its turn, and
# queued -> failed is not a transition.
SELECT_STALE = """
SELECT id, conversation_id FROM runs
WHERE ended_at IS NULL AND status IN ('running', 'requires_action')
  AND status_at < clock_timestamp() - make_interval(secs => $1)
ORDER BY status_at LIMIT $2
"""
IS_STALE = """
SELECT status_at < clock_timestamp() - make_interval(secs => $2) FROM runs WHERE id = $1
"""

# --- messages of a run -------------------------------------------------------------------------

SELECT_MESSAGE = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1 AND conversation_id = $2"
# The first valid answer wins: the row changes only while it has an unanswered, unexpired action.
ANSWER_ACTION = f"""
UPDATE messages SET
    action = action || jsonb_build_object('answer', $3::jsonb, 'answered_by', $4::text,
                                          'answered_at', $5::text, 'answered_seq', $6::bigint),
    updated_at = clock_timestamp()
WHERE id = $1 AND conversation_id = $2 AND action IS NOT NULL
  AND coalesce(action -> 'answer', 'null'::jsonb) = 'null'::jsonb
  AND (action ->> 'expires_at' IS NULL
       OR (action ->> 'expires_at')::timestamptz > clock_timestamp())
RETURNING {MESSAGE_COLUMNS}
"""
# Action messages answered at or after a seq (a socket resuming with since gets them again).
SELECT_ANSWERED_SINCE = f"""
SELECT {MESSAGE_COLUMNS} FROM messages
WHERE conversation_id = $1 AND action IS NOT NULL
  AND (action ->> 'answered_seq')::bigint >= $2
ORDER BY (action ->> 'answered_seq')::bigint
"""


async def lock_conversation(
    conn: Any, conversation_id: uuid.UUID, team_id: int | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK_CONVERSATION, conversation_id, team_id)


async def get_policies(conn: Any, conversation_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_POLICIES, conversation_ids)


async def create_run(
    conn: Any, conversation_id: uuid.UUID, agent: str, input_seq: int | None,
    metadata: dict[str, Any], queued_behind: uuid.UUID | None, seq: int, created_by: str,
) -> asyncpg.Record:
    return await conn.fetchrow(INSERT_RUN, uuid.uuid4(), conversation_id, agent, input_seq,
                               metadata, queued_behind, seq, created_by)


async def get_run(
    conn: Any, conversation_id: uuid.UUID, run_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    query = SELECT_RUN_FOR_UPDATE if for_update else SELECT_RUN
    return await conn.fetchrow(query, run_id, conversation_id)


async def get_status(conn: Any, run_id: uuid.UUID) -> str | None:
    return await conn.fetchval(SELECT_RUN_STATUS, run_id)


async def newest_unended(conn: Any, conversation_id: uuid.UUID) -> uuid.UUID | None:
    return await conn.fetchval(SELECT_NEWEST_UNENDED, conversation_id)


async def working_ids(conn: Any, conversation_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["id"] for r in await conn.fetch(SELECT_WORKING_IDS, conversation_id)]


async def list_runs(
    conn: Any, conversation_id: uuid.UUID, cursor: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[asyncpg.Record]:
    created_at, run_id = cursor or (None, None)
    return await conn.fetch(SELECT_RUNS_PAGE, conversation_id, created_at, run_id, limit)


async def runs_since(conn: Any, conversation_id: uuid.UUID, seq: int) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_RUNS_SINCE, conversation_id, seq)


async def update_run(
    conn: Any, run: Any, status: str, seq: int, *, error: Any = None, set_error: bool = False,
    activity: str | None = None, set_activity: bool = False,
) -> asyncpg.Record:
    return await conn.fetchrow(UPDATE_RUN, run["id"], run["conversation_id"], status, set_error,
                               error, set_activity, activity, seq)


async def request_cancel(conn: Any, run: Any, seq: int) -> asyncpg.Record:
    return await conn.fetchrow(REQUEST_CANCEL, run["id"], run["conversation_id"], seq)


async def stale_candidates(conn: Any, stale_after: float, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_STALE, stale_after, limit)


async def is_stale(conn: Any, run_id: uuid.UUID, stale_after: float) -> bool:
    return bool(await conn.fetchval(IS_STALE, run_id, stale_after))


async def get_message(
    conn: Any, conversation_id: uuid.UUID, message_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_MESSAGE, message_id, conversation_id)


async def answer_action(
    conn: Any, conversation_id: uuid.UUID, message_id: uuid.UUID, answer: dict[str, Any],
    answered_by: str, answered_at: str, seq: int,
) -> asyncpg.Record | None:
    return await conn.fetchrow(ANSWER_ACTION, message_id, conversation_id, answer, answered_by,
                               answered_at, seq)


async def answered_since(conn: Any, conversation_id: uuid.UUID, seq: int) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_ANSWERED_SINCE, conversation_id, seq)
