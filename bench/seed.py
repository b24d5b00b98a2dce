"""Fill a migrated chatserver database fast with COPY: `python -m bench.seed --messages N`.

`--conversations C` conversations (default 100,000); half of the messages go to one big
conversation (its history pages and replays are what grows), the other half round-robin over the
rest. The keys of messages are dropped during the COPY and rebuilt after it (one sort per index
instead of a random insert per row), then both tables are vacuumed and analyzed, as autovacuum
would leave a table that size. Prints the big conversation's id and message count.

The database is the configured one (`CHATSERVER_DATABASE_URL` / config.toml) unless
`--database-url` names another; migrations (and `[database] partitions`) are applied first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from chatserver.config import Settings
from chatserver.db.bootstrap import resolve_dsn, run_migrations
from chatserver.db.partitions import SELECT_KEYS_DDL

CONVERSATION_COLUMNS = ("id", "channel", "usecase", "team_id", "last_seq", "created_at",
                        "updated_at")
MESSAGE_COLUMNS = ("id", "conversation_id", "seq", "content", "content_type", "type", "channel",
                   "status", "created_by")
SELECT_KEY_NAMES = """
SELECT conname FROM pg_constraint
WHERE conrelid = 'messages'::regclass AND contype IN ('p', 'u', 'f')
"""
DROP_KEY = "ALTER TABLE messages DROP CONSTRAINT {}"
# The other indexes (partial ones, e.g. open streams), dropped and rebuilt the same way.
SELECT_INDEX_NAMES = """
SELECT indexrelid::regclass::text FROM pg_index
WHERE indrelid = 'messages'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint
                  WHERE conrelid = 'messages'::regclass AND conindid = indexrelid)
"""
QUOTE_IDENT = "SELECT quote_ident($1)"
START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 100_000  # ids drawn from os.urandom at once
TEAMS = 10


@dataclass(frozen=True)
class Seeded:
    big_conversation: uuid.UUID
    big_messages: int
    conversations: int
    messages: int


def _counts(messages: int, conversations: int) -> list[int]:
    """Messages per conversation: half to the first, the rest spread evenly."""
    big = messages // 2 if conversations > 1 else messages
    rest, others = messages - big, max(conversations - 1, 1)
    return [big] + [rest // others + (1 if i < rest % others else 0)
                    for i in range(conversations - 1)]


def _random_ids(count: int) -> Iterator[uuid.UUID]:
    while count > 0:
        n = min(count, CHUNK)
        raw = os.urandom(16 * n)
        for i in range(n):
            yield uuid.UUID(bytes=raw[16 * i:16 * i + 16], version=4)
        count -= n


def _conversation_rows(ids: list[uuid.UUID], counts: list[int]) -> Iterator[tuple[object, ...]]:
    for i, (cid, count) in enumerate(zip(ids, counts, strict=True)):
        at = START + timedelta(seconds=i)
        yield cid, "API", "seed", i % TEAMS + 1, count, at, at


def _message_rows(ids: list[uuid.UUID], counts: list[int]) -> Iterator[tuple[object, ...]]:
    """The big conversation's messages, then the others' interleaved (as they would arrive)."""
    new_id = _random_ids(sum(counts))
    for seq in range(1, counts[0] + 1):
        yield next(new_id), ids[0], seq, f"message {seq}", "text/plain", "message", "API", \
            "sent", "seed"
    for seq in range(1, max(counts[1:], default=0) + 1):
        for cid, count in zip(ids[1:], counts[1:], strict=True):
            if seq > count:
                break  # counts fall by at most one along the list
            yield next(new_id), cid, seq, f"message {seq}", "text/plain", "message", "API", \
                "sent", "seed"


@contextlib.asynccontextmanager
async def keys_rebuilt(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """messages without its keys (primary, unique, foreign) and other indexes meanwhile; rebuilt
    on exit, one sort per index (about 3x faster than maintaining them row by row)."""
    keys = [r[0] for r in await conn.fetch(SELECT_KEYS_DDL)]
    for row in await conn.fetch(SELECT_KEY_NAMES):
        await conn.execute(DROP_KEY.format(await conn.fetchval(QUOTE_IDENT, row[0])))
    for row in await conn.fetch(SELECT_INDEX_NAMES):
        await conn.execute(f"DROP INDEX {row[0]}")  # regclass text: already quoted
    yield
    await conn.execute("SET maintenance_work_mem = '512MB'")
    for ddl in keys:
        await conn.execute(ddl)
    await conn.execute("RESET maintenance_work_mem")


async def seed(conn: asyncpg.Connection, messages: int, conversations: int) -> Seeded:
    """Add `conversations` conversations holding `messages` messages to a migrated database."""
    counts = _counts(messages, conversations)
    ids = [uuid.uuid4() for _ in counts]
    async with keys_rebuilt(conn):
        await conn.copy_records_to_table("conversations", records=_conversation_rows(ids, counts),
                                         columns=CONVERSATION_COLUMNS)
        await conn.copy_records_to_table("messages", records=_message_rows(ids, counts),
                                         columns=MESSAGE_COLUMNS)
    await conn.execute("VACUUM (ANALYZE) conversations, messages")
    return Seeded(ids[0], counts[0], conversations, messages)


async def main(args: argparse.Namespace) -> None:
    settings = Settings.load(None)
    dsn = args.database_url or await resolve_dsn(settings)
    await run_migrations(dsn, partitions=settings.database.partitions)
    conn = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        seeded = await seed(conn, args.messages, args.conversations)
        print(f"seeded {seeded.messages:,} messages in {seeded.conversations:,} conversations "
              f"in {time.monotonic() - started:.1f} s; the big one, {seeded.big_messages:,} "
              f"messages: {seeded.big_conversation}")
    finally:
        await conn.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
