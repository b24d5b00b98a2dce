"""What Postgres did for our server during a measured window, from its statistics views.

`snapshot(dsn)` reads the run's database counters (`pg_stat_database`) and the index entries read
on the webhook outbox (`pg_stat_user_indexes`); `change(before, after, seconds)` turns two
snapshots into figures: commits/s, rows written per commit, and index entries read on
`webhook_deliveries` (divided by the webhooks received later, in `bench.run`). Statistics reach
the views within about a second of each transaction, which is noise over a 10 s window.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from bench.servers import run_sync

DATABASE = """
SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS written
FROM pg_stat_database WHERE datname = current_database()
"""
OUTBOX_INDEX_READS = """
SELECT coalesce(sum(idx_tup_read), 0)::bigint AS reads FROM pg_stat_user_indexes
WHERE relname = 'webhook_deliveries'
"""


async def _read(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        row = await conn.fetchrow(DATABASE)
        reads = await conn.fetchval(OUTBOX_INDEX_READS)
    finally:
        await conn.close()
    return {"commits": row["xact_commit"], "written": row["written"], "outbox_reads": reads}


def snapshot(dsn: str) -> dict[str, int]:
    return run_sync(_read(dsn))


def change(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, Any]:
    commits = after["commits"] - before["commits"]
    written = after["written"] - before["written"]
    return {"pg_commits_per_s": round(commits / seconds, 1) if seconds else None,
            "pg_rows_per_commit": round(written / commits, 2) if commits else None,
            "pg_outbox_index_reads": after["outbox_reads"] - before["outbox_reads"]}
