"""SQL for workflow conversations. `$team` parameters scope a query to one team; NULL means any."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

COLUMNS = "id, agent_product_id, user_id, team_id, configuration, created_at, updated_at"

INSERT_WORKFLOW_CONVERSATION = f"""
INSERT INTO workflow_conversations (agent_product_id, user_id, team_id, configuration)
VALUES ($1, $2, $3, $4)
RETURNING {COLUMNS}
"""
# Team scoping lives in the WHERE clause, so another team's id and an unknown id take one path.
SELECT_WORKFLOW_CONVERSATION = f"""
SELECT {COLUMNS} FROM workflow_conversations
WHERE id = $1 AND ($2::bigint IS NULL OR team_id = $2)
"""
# $3 says whether user_id is being set, so a user can be cleared with NULL; NULL elsewhere keeps.
UPDATE_WORKFLOW_CONVERSATION = f"""
UPDATE workflow_conversations SET
    agent_product_id = COALESCE($4, agent_product_id),
    user_id = CASE WHEN $3 THEN $5 ELSE user_id END,
    configuration = COALESCE($6, configuration),
    updated_at = clock_timestamp()
WHERE id = $1 AND ($2::bigint IS NULL OR team_id = $2)
RETURNING {COLUMNS}
"""
# One statement, evaluated against the latest row version, so concurrent connects all land.
MERGE_CONFIGURATION = f"""
UPDATE workflow_conversations SET
    configuration = configuration || $3::jsonb,
    updated_at = clock_timestamp()
WHERE id = $1 AND ($2::bigint IS NULL OR team_id = $2)
RETURNING {COLUMNS}
"""
# Keyset pages, newest first. A NULL cursor becomes a bound above every row, so the cursor is
# always an index condition (an `$3 IS NULL OR ...` would turn it into a filter). LIMIT NULL = all.
SELECT_USER_PAGE = f"""
SELECT {COLUMNS} FROM workflow_conversations
WHERE user_id = $1 AND ($2::bigint IS NULL OR team_id = $2)
  AND (created_at, id) < (COALESCE($3::timestamptz, 'infinity'),
                          COALESCE($4::bigint, 9223372036854775807))
ORDER BY created_at DESC, id DESC
LIMIT $5
"""
# The same with the predicate of the partial index workflow_conversations_user_running, verbatim.
SELECT_USER_RUNNING_PAGE = f"""
SELECT {COLUMNS} FROM workflow_conversations
WHERE user_id = $1 AND ($2::bigint IS NULL OR team_id = $2)
  AND configuration -> 'running' = 'true'::jsonb
  AND (created_at, id) < (COALESCE($3::timestamptz, 'infinity'),
                          COALESCE($4::bigint, 9223372036854775807))
ORDER BY created_at DESC, id DESC
LIMIT $5
"""

Cursor = tuple[datetime, int]


async def create_workflow_conversation(
    conn: Any, agent_product_id: int, user_id: int | None, team_id: int | None,
    configuration: dict[str, Any],
) -> asyncpg.Record:
    return await conn.fetchrow(
        INSERT_WORKFLOW_CONVERSATION, agent_product_id, user_id, team_id, configuration
    )


async def get_workflow_conversation(
    conn: Any, workflow_conversation_id: int, team_id: int | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_WORKFLOW_CONVERSATION, workflow_conversation_id, team_id)


async def update_workflow_conversation(
    conn: Any, workflow_conversation_id: int, team_id: int | None, changes: dict[str, Any]
) -> asyncpg.Record | None:
    """Set the keys present in `changes`; None when no row (of the team) has the id."""
    return await conn.fetchrow(
        UPDATE_WORKFLOW_CONVERSATION, workflow_conversation_id, team_id, "user_id" in changes,
        changes.get("agent_product_id"), changes.get("user_id"), changes.get("configuration"),
    )


async def merge_configuration(
    conn: Any, workflow_conversation_id: int, team_id: int | None, data: dict[str, Any]
) -> asyncpg.Record | None:
    return await conn.fetchrow(MERGE_CONFIGURATION, workflow_conversation_id, team_id, data)


async def list_for_user(
    conn: Any, user_id: int, team_id: int | None, *, running: bool, before: Cursor | None,
    limit: int | None,
) -> list[asyncpg.Record]:
    created_at, last_id = before if before else (None, None)
    sql = SELECT_USER_RUNNING_PAGE if running else SELECT_USER_PAGE
    return await conn.fetch(sql, user_id, team_id, created_at, last_id, limit)
