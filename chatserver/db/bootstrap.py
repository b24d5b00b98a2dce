"""Getting to a migrated database: the configured URL or the embedded server, then migrations.

Used by every process that touches Postgres: the server, `chatserver worker`, the CLI, and the
parent of `serve --workers`.
"""

from __future__ import annotations

import asyncio

import asyncpg

from chatserver.config import Settings
from chatserver.db.embedded import start_embedded
from chatserver.db.migrate import migrate


async def resolve_dsn(settings: Settings) -> str:
    """The configured database URL, or the embedded server's (started if needed)."""
    if settings.database.url:
        return settings.database.url
    loop = asyncio.get_running_loop()
    _server, dsn = await loop.run_in_executor(None, start_embedded, settings.database.data_dir)
    return dsn


async def run_migrations(dsn: str, *, partitions: int) -> list[int]:
    """Pending migrations, then `[database] partitions` (see db/partitions.py)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, partitions=partitions)
    finally:
        await conn.close()
