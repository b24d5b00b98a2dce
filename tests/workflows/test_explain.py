"""At a million rows the user and running queries are index scans, never sequential scans.

The plans are checked twice: as planned for the given parameters (custom plan), and as the
generic plan a prepared statement may switch to after a few executions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from chatserver.store.workflow_conversations import SELECT_USER_PAGE, SELECT_USER_RUNNING_PAGE

ROWS = 1_000_000
HEAVY_USER = 1
USER = 43
TEAM = 2
# One heavy user with 100,000 conversations; 9,000 others with 100 each. A user's rows all belong
# to one team (a third of the users have none). About a quarter of each user's rows are running
# (JSON true); the others have running "true" (a string), false, or no running key.
FILL = """
INSERT INTO workflow_conversations
    (agent_product_id, user_id, team_id, configuration, created_at, updated_at)
SELECT g % 97 + 1, u, CASE WHEN u % 3 = 0 THEN NULL ELSE u % 7 + 1 END,
       (CASE (g / 10000) % 4
            WHEN 0 THEN '{"running": true}' WHEN 1 THEN '{"running": "true"}'
            WHEN 2 THEN '{"running": false}' ELSE '{"step": 1}' END)::jsonb,
       timestamptz '2026-01-01' + g * interval '1 second',
       timestamptz '2026-01-01' + g * interval '1 second'
FROM generate_series(1, $1) AS g,
     LATERAL (SELECT CASE WHEN g % 10 = 0 THEN 1 ELSE g % 9000 + 2 END AS u) AS users
"""
CURSOR = (datetime(2026, 1, 6, tzinfo=UTC), 400_000)
# (user_id, team_id, cursor created_at, cursor id, limit): first pages, team pages, later pages,
# and (for a user of ordinary size) everything at once, as the service's list methods ask.
PAGES = [
    (None, None, None, 51),
    (TEAM, None, None, 51),
    (None, *CURSOR, 51),
    (TEAM, *CURSOR, 51),
]
PARAMETERS = [(USER, *p) for p in PAGES] + [(HEAVY_USER, *p) for p in PAGES] + [
    (USER, None, None, None, None), (USER, TEAM, None, None, None),
]
QUERIES = [
    (SELECT_USER_PAGE, "workflow_conversations_user_newest"),
    (SELECT_USER_RUNNING_PAGE, "workflow_conversations_user_running"),
]
PARAMETER_TYPES = "bigint, bigint, timestamptz, bigint, bigint"


@pytest.fixture
async def million_rows(db: asyncpg.Connection) -> asyncpg.Connection:
    await db.execute(FILL, ROWS)
    await db.execute("ANALYZE workflow_conversations")
    return db


def plan_text(rows: list[Any]) -> str:
    return "\n".join(r[0] for r in rows)


def literal(value: object) -> str:
    """A test constant as SQL text, for EXECUTE (which takes no bind parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    return str(int(value))  # type: ignore[call-overload]


def check_plan(plan: str, index: str, *, in_order: bool) -> None:
    """`index` finds the rows, never a scan of the table; `in_order`: walked in order, unsorted.

    For a user with a hundred rows the planner rightly prefers a bitmap scan and a small sort.
    """
    assert "Seq Scan" not in plan, plan
    assert f"Index Scan using {index}" in plan or f"Bitmap Index Scan on {index}" in plan, plan
    if in_order:
        assert f"Index Scan using {index}" in plan and "Sort" not in plan, plan


async def check_answers(db: asyncpg.Connection) -> None:
    """The filled table answers as the service promises (the plans are checked on these rows)."""
    everything = await db.fetch(SELECT_USER_PAGE, USER, TEAM, None, None, None)
    assert len(everything) == await db.fetchval(
        "SELECT count(*) FROM workflow_conversations WHERE user_id = $1", USER
    )
    running = await db.fetch(SELECT_USER_RUNNING_PAGE, USER, TEAM, None, None, None)
    expected = [r["id"] for r in everything if r["configuration"].get("running") is True]
    assert 0 < len(expected) < len(everything)
    assert [r["id"] for r in running] == expected
    heavy_page = await db.fetch(SELECT_USER_RUNNING_PAGE, HEAVY_USER, TEAM, *CURSOR, 51)
    assert len(heavy_page) == 51
    assert all(r["configuration"] == {"running": True} for r in heavy_page)
    assert all((r["created_at"], r["id"]) < CURSOR for r in heavy_page)


async def test_user_queries_use_their_indexes_at_a_million_rows(
    million_rows: asyncpg.Connection,
) -> None:
    db = million_rows
    assert await db.fetchval("SELECT count(*) FROM workflow_conversations") == ROWS
    await check_answers(db)
    for sql, index in QUERIES:
        for params in PARAMETERS:
            plan = plan_text(await db.fetch("EXPLAIN " + sql, *params))
            check_plan(plan, index, in_order=params[0] == HEAVY_USER)
        # The generic plan cannot know the user is heavy; it must still go through the index.
        await db.execute(f"PREPARE user_page ({PARAMETER_TYPES}) AS {sql}")
        await db.execute("SET plan_cache_mode = force_generic_plan")
        for params in PARAMETERS:
            values = ", ".join(literal(v) for v in params)
            plan = plan_text(await db.fetch(f"EXPLAIN EXECUTE user_page ({values})"))
            check_plan(plan, index, in_order=False)
        await db.execute("RESET plan_cache_mode")
        await db.execute("DEALLOCATE user_page")
