"""Databases built step by step for the schema tests: here `database_url` (and so `db`) is an
empty database, not a copy of the migrated template; tests migrate it as far as they need."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from chatserver.db.dsn import with_database
from chatserver.db.migrate import CREATE_TABLE, INSERT_APPLIED, load_migrations
from chatserver.db.partitions import SELECT_KEYS_DDL
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

SELECT_KEY_NAMES = """
SELECT conname FROM pg_constraint
WHERE conrelid = 'messages'::regclass AND contype IN ('p', 'u', 'f')
"""


async def seed(conn: asyncpg.Connection, conversations: int, per_conversation: int) -> None:
    """Fill messages with the keys dropped and rebuilt after (3x faster than keeping them)."""
    keys = [r[0] for r in await conn.fetch(SELECT_KEYS_DDL)]
    for row in await conn.fetch(SELECT_KEY_NAMES):
        await conn.execute(f'ALTER TABLE messages DROP CONSTRAINT "{row[0]}"')
    await conn.execute(SEED_CONVERSATIONS, conversations, per_conversation)
    await conn.execute(SEED_MESSAGES)
    for ddl in keys:
        await conn.execute(ddl)
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

