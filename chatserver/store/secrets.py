"""SQL for secrets shared by all instances (created once, first writer wins)."""

from __future__ import annotations

from typing import Any

INSERT_SECRET = """
INSERT INTO signing_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING
"""
SELECT_SECRET = "SELECT secret FROM signing_secrets WHERE name = $1"
LOCK_ALL_SECRETS = "SELECT name, secret FROM signing_secrets ORDER BY name FOR UPDATE"
UPDATE_SECRET = "UPDATE signing_secrets SET secret = $2 WHERE name = $1"


async def get_or_create_secret(conn: Any, name: str, candidate: bytes) -> bytes:
    """The stored secret `name`; `candidate` becomes it if none exists yet."""
    await conn.execute(INSERT_SECRET, name, candidate)
    secret: bytes = await conn.fetchval(SELECT_SECRET, name)
    return secret


async def lock_all_secrets(conn: Any) -> list[Any]:
    """Every stored secret, locked until the transaction ends (for re-encryption)."""
    rows: list[Any] = await conn.fetch(LOCK_ALL_SECRETS)
    return rows


async def update_secret(conn: Any, name: str, secret: bytes) -> None:
    await conn.execute(UPDATE_SECRET, name, secret)
