"""Claims never read the backlog: with 40,000 finished and 40,000 queued deliveries (to each
conversation's callback endpoint and to one team endpoint), the strict claim (lock ready queues,
claim their heads) and the best-effort claim read deliveries only by index, a few rows per queue,
never by a sequential scan.

A claim runs each time a send slot frees, so a claim that reads the backlog makes Postgres the
bottleneck exactly when a backlog exists (BENCHMARKS.md, performance work 13).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson
import pytest

from chatserver.store.webhooks import CLAIM_DUE, CLAIM_HEADS, READY_QUEUES

CONVERSATIONS = 50
DELIVERIES = 80_000  # the older half finished, the newer half pending
FILL = """
WITH c AS (
    INSERT INTO conversations (id, channel, usecase)
    SELECT gen_random_uuid(), 'API', 'DEFAULT' FROM generate_series(1, $1)
    RETURNING id
), e AS (
    INSERT INTO webhook_endpoints (id, conversation_id, url, secret)
    SELECT id, id, 'http://127.0.0.1:9/hook', 'whsec_x' FROM c
    RETURNING conversation_id
), team AS (
    INSERT INTO webhook_endpoints (id, url, secret, event_types)
    VALUES (gen_random_uuid(), 'http://127.0.0.1:9/team', 'whsec_y', '{*}')
    RETURNING id
), numbered AS (
    SELECT conversation_id, row_number() OVER () AS k FROM e
)
INSERT INTO webhook_deliveries (id, endpoint_id, conversation_id, event_type, payload, status)
SELECT gen_random_uuid(), CASE WHEN g % 2 = 0 THEN n.conversation_id ELSE team.id END,
       n.conversation_id, 'message.created', '{}',
       CASE WHEN g <= $2 / 2 THEN 'succeeded' ELSE 'pending' END
FROM generate_series(1, $2) AS g JOIN numbered n ON n.k = g % $1 + 1 CROSS JOIN team
ORDER BY g
"""


@pytest.fixture
async def backlog(db: asyncpg.Connection) -> asyncpg.Connection:
    await db.execute(FILL, CONVERSATIONS, DELIVERIES)
    await db.execute("ANALYZE webhook_deliveries")
    return db


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


async def plan_of(db: asyncpg.Connection, query: str, *args: Any) -> list[dict[str, Any]]:
    async with db.transaction():  # EXPLAIN ANALYZE of an UPDATE runs it: rolled back below
        raw = await db.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", *args)
        plan = (orjson.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
        raise Rollback(nodes(plan))


class Rollback(Exception):  # noqa: N818 - carries the plan out of the rolled-back transaction
    def __init__(self, found: list[dict[str, Any]]) -> None:
        self.found = found


async def plan_nodes(db: asyncpg.Connection, query: str, *args: Any) -> list[dict[str, Any]]:
    try:
        await plan_of(db, query, *args)
    except Rollback as done:
        return done.found
    raise AssertionError("unreachable")


def assert_index_only_reads(found: list[dict[str, Any]]) -> None:
    on_deliveries = [n for n in found if n.get("Relation Name") == "webhook_deliveries"]
    assert on_deliveries, "the plan does not read webhook_deliveries at all?"
    assert all(n["Node Type"] != "Seq Scan" for n in on_deliveries), on_deliveries
    # A few rows per conversation (its head), not the 40,000 queued or finished.
    for node in on_deliveries:
        read = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
        detail = {k: v for k, v in node.items() if k != "Plans"}
        assert read <= 40 * CONVERSATIONS, f"{read} rows read: {detail}"


async def test_strict_claims_read_heads_only(backlog: asyncpg.Connection) -> None:
    zero = uuid.UUID(int=0)
    middle = await backlog.fetchrow(
        "SELECT endpoint_id, conversation_id FROM webhook_deliveries WHERE status = 'pending' "
        "ORDER BY endpoint_id, conversation_id OFFSET 20000 LIMIT 1")
    for cursor in ((zero, zero), (middle["endpoint_id"], middle["conversation_id"])):
        ready = await plan_nodes(backlog, READY_QUEUES, 80, *cursor, [])
        assert_index_only_reads(ready)
    queues = await backlog.fetch(
        "SELECT DISTINCT endpoint_id, conversation_id FROM webhook_deliveries LIMIT 20")
    assert_index_only_reads(await plan_nodes(
        backlog, CLAIM_HEADS, [q["endpoint_id"] for q in queues],
        [q["conversation_id"] for q in queues], "test", 30.0))


async def test_best_effort_claim_skips_finished_deliveries(backlog: asyncpg.Connection) -> None:
    assert_index_only_reads(await plan_nodes(backlog, CLAIM_DUE, 20, "test", 30.0, [], [], 10))
