"""Migration 0005 re-keys a populated messages table by conversation: 1 M rows, nothing lost."""

from __future__ import annotations

import asyncpg
import pytest

from chatserver.db.migrate import migrate
from tests.store.conftest import migrate_up_to, seed

# Which rows there are: count and a checksum of the ids.
SELECT_FINGERPRINT = "SELECT count(*), sum(hashtext(id::text)) FROM messages"
# 1,000 conversations x 1,000 messages.
CONVERSATIONS = 1_000
PER_CONVERSATION = 1_000

# Each index of messages with its columns in order.
SELECT_INDEXES = """
SELECT i.relname AS name,
       array_agg(a.attname ORDER BY k.n) AS columns
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
WHERE x.indrelid = 'messages'::regclass
GROUP BY i.relname
"""


KEYS = ("messages_pkey", "messages_seq_unique", "messages_client_id_unique")


async def indexes(conn: asyncpg.Connection) -> dict[str, list[str]]:
    return {r["name"]: r["columns"] for r in await conn.fetch(SELECT_INDEXES)}


async def test_rekey_migration_on_a_million_rows(db: asyncpg.Connection) -> None:
    await migrate_up_to(db, 4)
    await seed(db, CONVERSATIONS, PER_CONVERSATION)
    before = await db.fetchrow(SELECT_FINGERPRINT)
    assert (await indexes(db))["messages_pkey"] == ["id"]

    assert (await migrate(db, partitions=0))[0] == 5  # and the later ones after it

    found = await indexes(db)
    assert {name: found[name] for name in KEYS} == {
        "messages_pkey": ["conversation_id", "id"],
        "messages_seq_unique": ["conversation_id", "seq"],
        "messages_client_id_unique": ["conversation_id", "client_id"],
    }
    # Every other index leads with conversation_id too, but the idle-stream sweep's: a partial
    # index of open streams only, read across conversations by design (one small scan a tick).
    assert all(columns[0] == "conversation_id" for name, columns in found.items()
               if name != "messages_idle_streams")
    assert await db.fetchrow(SELECT_FINGERPRINT) == before
    assert before[0] == CONVERSATIONS * PER_CONVERSATION
    # The new key still refuses a second row with a stored message's (conversation, id).
    with pytest.raises(asyncpg.UniqueViolationError, match="messages_pkey"):
        await db.execute(
            "INSERT INTO messages (id, conversation_id, seq, content, content_type, type, "
            "channel, status, created_by) "
            "SELECT id, conversation_id, -1, '', 'text/plain', 'message', 'API', 'sent', 'x' "
            "FROM messages LIMIT 1"
        )
