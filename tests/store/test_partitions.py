"""`[database] partitions`: a new database gets messages as N hash partitions, with the same keys
under the same names and the same store behaviour; a populated or differently partitioned table is
refused, never converted."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from chatserver.config import ConfigError
from chatserver.db.migrate import migrate
from chatserver.db.partitions import get_layout
from chatserver.store.conversations import create_conversation
from chatserver.store.messages import (
    NewMessage,
    get_by_client_id,
    insert_message,
    insert_messages,
    list_messages,
    update_message,
)
from tests.store.conftest import seed

SELECT_KEYS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = 'messages'::regclass AND contype IN ('p', 'u', 'f') ORDER BY conname
"""
# The keys of messages as the migrations make them, partitioned or not.
KEYS = [
    ("messages_client_id_unique", "UNIQUE (conversation_id, client_id)"),
    ("messages_conversation_id_fkey",
     "FOREIGN KEY (conversation_id) REFERENCES conversations(id) ON DELETE CASCADE"),
    ("messages_pkey", "PRIMARY KEY (conversation_id, id)"),
    ("messages_seq_unique", "UNIQUE (conversation_id, seq)"),
]
SELECT_PARTITION_ROWS = """
SELECT tableoid::regclass::text AS partition, count(*) FROM messages GROUP BY 1
"""


async def keys(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    return [tuple(r) for r in await conn.fetch(SELECT_KEYS)]


async def test_a_new_database_gets_hash_partitions_with_the_same_keys(
    db: asyncpg.Connection,
) -> None:
    await migrate(db, partitions=4)
    layout = await get_layout(db)
    assert (layout.partitioned, layout.partitions) == (True, 4)
    assert await keys(db) == KEYS
    # Started again with the same setting, or with none: nothing to do.
    assert await migrate(db, partitions=4) == []
    assert await migrate(db, partitions=0) == []
    assert (await get_layout(db)).partitions == 4


async def test_messages_spread_over_partitions_and_behave_as_before(
    db: asyncpg.Connection,
) -> None:
    await migrate(db, partitions=4)
    conversations = [
        (await create_conversation(db, "API", "test", {}, {}, None))["id"] for _ in range(16)
    ]
    batch = [NewMessage(c, f"m{i}", "text/plain", "message", "sent", "tester", client_id=f"k{i}")
             for c in conversations for i in range(3)]
    rows = await insert_messages(db, batch)
    assert all(r["created"] for r in rows) and len(rows) == 48
    spread = {r["partition"]: r["count"] for r in await db.fetch(SELECT_PARTITION_ROWS)}
    assert len(spread) > 1 and sum(spread.values()) == 48

    # Idempotency: a repeated client_id comes back as stored, in a batch or alone.
    again = await insert_messages(db, batch[:1])
    assert [r["created"] for r in again] == [False]
    assert again[0]["id"] == (await get_by_client_id(db, conversations[0], "k0"))["id"]
    # (The partition's index reports the violation, under its own name.)
    with pytest.raises(asyncpg.UniqueViolationError, match=r"\(conversation_id, client_id\)"):
        await insert_message(db, batch[0])

    fourth = await insert_message(db, NewMessage(conversations[0], "m3", "text/plain", "message",
                                                 "sent", "tester"))
    assert fourth["seq"] == 4
    page = await list_messages(db, conversations[0], before=4, after=None, limit=2,
                               ascending=False)
    assert [r["seq"] for r in page] == [3, 2]
    updated = await update_message(db, conversations[0], fourth["id"], "read", None)
    assert updated["status"] == "read"
    assert await update_message(db, conversations[1], fourth["id"], "read", None) is None


async def test_a_populated_plain_table_is_never_converted(db: asyncpg.Connection) -> None:
    await migrate(db, partitions=0)
    assert await keys(db) == KEYS
    await seed(db, 2, 3)
    with pytest.raises(ConfigError, match=r"\[database\] partitions = 4 applies to a new database"):
        await migrate(db, partitions=4)
    assert not (await get_layout(db)).partitioned
    assert await db.fetchval("SELECT count(*) FROM messages") == 6


async def test_the_number_of_partitions_never_changes(db: asyncpg.Connection) -> None:
    await migrate(db, partitions=4)
    with pytest.raises(ConfigError, match="already has 4 partitions"):
        await migrate(db, partitions=8)
    assert (await get_layout(db)).partitions == 4


async def test_messages_of_a_deleted_conversation_go_with_it(
    db: asyncpg.Connection,
) -> None:
    await migrate(db, partitions=2)
    conversation = await create_conversation(db, "API", "test", {}, {}, None)
    await insert_message(db, NewMessage(conversation["id"], "m", "text/plain", "message",
                                              "sent", "tester"))
    await db.execute("DELETE FROM conversations WHERE id = $1", conversation["id"])
    assert await db.fetchval("SELECT count(*) FROM messages") == 0
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute(
            "INSERT INTO messages (id, conversation_id, seq, content, content_type, type, "
            "channel, status, created_by) VALUES ($1, $2, 1, '', 'text/plain', 'message', 'API', "
            "'sent', 'x')", uuid.uuid4(), conversation["id"])
