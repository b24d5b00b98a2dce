"""SQL for API keys (stored as a SHA-256 hash, looked up by a non-secret prefix)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

INSERT_KEY = """
INSERT INTO api_keys (id, name, team_id, prefix, key_hash, agent)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, name, team_id, prefix, agent, created_at, revoked_at
"""
SELECT_BY_PREFIX = """
SELECT id, name, team_id, key_hash, agent, revoked_at FROM api_keys WHERE prefix = $1
"""
SELECT_ALL = """
SELECT id, name, team_id, prefix, agent, created_at, revoked_at FROM api_keys ORDER BY created_at
"""
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id
"""
COUNT_ACTIVE = "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"
SELECT_ACTIVE_AMONG = "SELECT id FROM api_keys WHERE id = ANY($1::uuid[]) AND revoked_at IS NULL"


async def create_key(
    conn: Any, name: str, team_id: int | None, prefix: str, key_hash: bytes,
    agent: str | None = None,
) -> asyncpg.Record:
    return await conn.fetchrow(INSERT_KEY, uuid.uuid4(), name, team_id, prefix, key_hash, agent)


async def get_key_by_prefix(conn: Any, prefix: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_BY_PREFIX, prefix)


async def list_keys(conn: Any) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_ALL)


async def revoke_key(conn: Any, key_id: uuid.UUID) -> bool:
    return await conn.fetchval(REVOKE_KEY, key_id) is not None


async def count_active_keys(conn: Any) -> int:
    return await conn.fetchval(COUNT_ACTIVE)


async def active_among(conn: Any, key_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these keys exist and are not revoked."""
    return {row["id"] for row in await conn.fetch(SELECT_ACTIVE_AMONG, key_ids)}
