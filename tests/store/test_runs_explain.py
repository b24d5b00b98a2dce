"""The queries a resuming socket and the input policy run (store/runs.py) can find their rows
through an index that leads with conversation_id, on a plain messages table and on hash
partitions: with sequential scans disabled the plan holds none (an index that the query's text
does not match would leave only a sequential scan)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from chatserver.db.migrate import migrate
from chatserver.store import runs as store

QUERIES = {
    "answered_since": (store.SELECT_ANSWERED_SINCE, "messages_answered"),
    "runs_since": (store.SELECT_RUNS_SINCE, "runs_conversation_seq"),
    "working": (store.SELECT_WORKING_IDS, "runs_active"),
}


# 100 conversations with 20 runs each, half of them ended: the planner has statistics to choose by.
SEED_RUNS = """
WITH c AS (
    INSERT INTO conversations (id, channel, usecase)
    SELECT gen_random_uuid(), 'API', 'seed' FROM generate_series(1, 100) RETURNING id
)
INSERT INTO runs (id, conversation_id, agent, status, seq, created_by, ended_at)
SELECT gen_random_uuid(), c.id, 'agent', CASE WHEN n % 2 = 0 THEN 'completed' ELSE 'running' END,
       n, 'seed', CASE WHEN n % 2 = 0 THEN clock_timestamp() END
FROM c, generate_series(1, 20) AS n
"""


@pytest.mark.parametrize("partitions", [0, 4])
@pytest.mark.parametrize("query", sorted(QUERIES))
async def test_query_uses_its_index(db: asyncpg.Connection, partitions: int, query: str) -> None:
    await migrate(db, partitions=partitions)
    await db.execute(SEED_RUNS)
    await db.execute("ANALYZE runs")
    sql, index = QUERIES[query]
    args: list[object] = [uuid.uuid4()] + ([7] if "$2" in sql else [])
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await db.fetch(f"EXPLAIN {sql}", *args))
    assert "Seq Scan" not in plan, plan
    assert index in plan or (partitions and index.replace("messages_", "") in plan), plan
