"""Schema migrations: numbered plain-SQL files in db/migrations, applied in order, each once.

Applied versions are recorded in `schema_migrations`. The whole run holds a Postgres advisory lock,
so several instances starting at once apply each migration exactly once and wait for each other.
The messages table's partitioning (`[database] partitions`, db/partitions.py) follows under the
same lock.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from chatserver.db.partitions import apply_partitions

log = logging.getLogger(__name__)

# Any constant works, as long as nothing else in the database uses it.
MIGRATION_LOCK_ID = 7_295_001

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version FROM schema_migrations"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("chatserver.db").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


async def migrate(conn: asyncpg.Connection, *, partitions: int) -> list[int]:
    """Apply pending migrations, then `partitions`; return the versions applied by this call."""
    applied_now = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(CREATE_TABLE)
        done = {r["version"] for r in await conn.fetch(SELECT_APPLIED)}
        for migration in load_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(INSERT_APPLIED, migration.version, migration.name)
            log.info("applied migration %04d_%s", migration.version, migration.name)
            applied_now.append(migration.version)
        await apply_partitions(conn, partitions)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now
