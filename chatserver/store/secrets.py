"""SQL for secrets shared by all instances (created once, first writer wins)."""

from __future__ import annotations

from typing import Any

INSERT_SECRET = """
INSERT INTO signing_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING
"""
SELECT_SECRET = "SELECT secret FROM signing_secrets WHERE name = $1"


async def get_or_create_secret(conn: Any, name: str, candidate: bytes) -> bytes:
    """The stored secret `name`; `candidate` becomes it if none exists yet."""
    await conn.execute(INSERT_SECRET, name, candidate)
    secret: bytes = await conn.fetchval(SELECT_SECRET, name)
    return secret
