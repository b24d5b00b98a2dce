"""`[database] partitions = N`: the messages table as N hash partitions by conversation.

Applied right after the migrations, under their advisory lock. The migrations always create a plain
`messages`; while it is still empty (a new database) this step swaps it for a table of the same
shape partitioned by hash of `conversation_id`, carrying over every constraint and index under its
own name. Every index of messages leads with conversation_id (migration 0005), so each query names
its partition and no query changes.

It never moves rows: asked to partition a populated plain table, or to change the number of
partitions of a partitioned one, it refuses with a ConfigError. `partitions = 0` leaves whatever
the database has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from chatserver.config import ConfigError

log = logging.getLogger(__name__)

SELECT_LAYOUT = """
SELECT p.partrelid IS NOT NULL AS partitioned,
       (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid) AS partitions
FROM pg_class c LEFT JOIN pg_partitioned_table p ON p.partrelid = c.oid
WHERE c.oid = 'messages'::regclass
"""
LOCK_MESSAGES = "LOCK TABLE messages IN ACCESS EXCLUSIVE MODE"
SELECT_HAS_ROWS = "SELECT EXISTS (SELECT 1 FROM messages)"
# Columns, defaults, NOT NULL and CHECK constraints; the keys and indexes follow, by name.
CREATE_PARTITIONED = """
CREATE TABLE messages_partitioned (LIKE messages INCLUDING ALL EXCLUDING INDEXES)
PARTITION BY HASH (conversation_id)
"""
# The DDL that recreates the plain table's keys (primary, unique, foreign) and other indexes on
# the table that will take its name.
SELECT_KEYS_DDL = """
SELECT format('ALTER TABLE messages ADD CONSTRAINT %I %s', conname, pg_get_constraintdef(oid))
FROM pg_constraint
WHERE conrelid = 'messages'::regclass AND contype IN ('p', 'u', 'f', 'x')
UNION ALL
SELECT pg_get_indexdef(indexrelid)
FROM pg_index
WHERE indrelid = 'messages'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint
                  WHERE conrelid = 'messages'::regclass AND conindid = indexrelid)
"""
DROP_PLAIN = "DROP TABLE messages"
RENAME_PARTITIONED = "ALTER TABLE messages_partitioned RENAME TO messages"
SELECT_PARTITIONS_DDL = """
SELECT format('CREATE TABLE %I PARTITION OF messages FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
              'messages_p' || r, $1::int, r)
FROM generate_series(0, $1::int - 1) AS r
"""


@dataclass(frozen=True)
class Layout:
    partitioned: bool
    partitions: int


async def get_layout(conn: asyncpg.Connection) -> Layout:
    row = await conn.fetchrow(SELECT_LAYOUT)
    return Layout(row["partitioned"], row["partitions"])


async def apply_partitions(conn: asyncpg.Connection, partitions: int) -> None:
    """Make messages N hash partitions if asked and still possible; refuse what is not."""
    if partitions == 0:
        return
    layout = await get_layout(conn)
    if layout.partitioned:
        if layout.partitions != partitions:
            raise ConfigError(
                f"[database] partitions = {partitions}, but messages already has "
                f"{layout.partitions} partitions; changing their number is not supported"
            )
        return
    async with conn.transaction():
        # Nobody writes a first message between the check and the swap.
        await conn.execute(LOCK_MESSAGES)
        if await conn.fetchval(SELECT_HAS_ROWS):
            raise ConfigError(
                f"[database] partitions = {partitions} applies to a new database only: messages "
                "already holds rows in a plain table, which is never converted in place. Set 0 "
                "to keep it, or copy the data into a new database created with partitions set"
            )
        await _partition_empty_table(conn, partitions)
    log.info("messages created as %d hash partitions by conversation_id", partitions)


async def _partition_empty_table(conn: asyncpg.Connection, partitions: int) -> None:
    await conn.execute(CREATE_PARTITIONED)
    keys = [r[0] for r in await conn.fetch(SELECT_KEYS_DDL)]
    await conn.execute(DROP_PLAIN)
    await conn.execute(RENAME_PARTITIONED)
    for row in await conn.fetch(SELECT_PARTITIONS_DDL, partitions):
        await conn.execute(row[0])
    for ddl in keys:
        await conn.execute(ddl)
