"""Databases built step by step for the schema tests: here `database_url` (and so `db`) is an
empty database, not a copy of the migrated template; tests migrate it as far as they need."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from bench.seed import keys_rebuilt
from chatserver.db.dsn import with_database
from chatserver.db.migrate import CREATE_TABLE, INSERT_APPLIED, load_migrations
from tests import databases

# conversations x messages each, every message with a client_id, spread over created_at.
SEED_CONVERSATIONS = """
INSERT INTO conversations (id, channel, usecase, last_seq)
SELECT gen_random_uuid(), 'API', 'seed', $2 FROM generate_series(1, $1)
"""
SEED_MESSAGES = """
INSERT INTO messages (id, conversation_id, seq, client_id, content, content_type, type, channel,
                      status, created_by)
SELECT gen_random_uuid(), c.id, s, 'c' || s, 'message ' || s, 'text/plain', 'message', 'API',
       'sent', 'seed'
FROM conversations c, generate_series(1, c.last_seq) AS s
"""


async def seed(conn: asyncpg.Connection, conversations: int, per_conversation: int) -> None:
    async with keys_rebuilt(conn):
        await conn.execute(SEED_CONVERSATIONS, conversations, per_conversation)
        await conn.execute(SEED_MESSAGES)
    await conn.execute("ANALYZE conversations, messages")


@pytest.fixture
async def database_url(postgres_admin_dsn: str) -> AsyncIterator[str]:
    """A database with no schema at all."""
    name = await databases.create_test_database(postgres_admin_dsn, "template1")
    yield with_database(postgres_admin_dsn, name)
    await databases.drop_database(postgres_admin_dsn, name)


async def migrate_up_to(conn: asyncpg.Connection, version: int) -> None:
    """Apply the migrations numbered up to `version`, as the migrator would have then."""
    await conn.execute(CREATE_TABLE)
    for migration in load_migrations():
        if migration.version <= version:
            await conn.execute(migration.sql)
            await conn.execute(INSERT_APPLIED, migration.version, migration.name)

