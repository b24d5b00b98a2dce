"""Print EXPLAIN (ANALYZE, BUFFERS) of the workflow conversation user queries at a million rows.

Run from the repository root: `python -m bench.workflow_explain`. It starts a throwaway embedded
Postgres (or uses CHATSERVER_TEST_DATABASE_URL), fills it as tests/test_workflows_explain.py does,
and prints markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio

import asyncpg

from chatserver.db.dsn import with_database
from chatserver.db.pool import init_connection
from chatserver.store.workflow_conversations import SELECT_USER_PAGE, SELECT_USER_RUNNING_PAGE
from tests import databases
from tests.workflows.test_explain import (
    CURSOR,
    FILL,
    HEAVY_USER,
    PARAMETER_TYPES,
    ROWS,
    TEAM,
    USER,
    literal,
)

CASES = [
    ("a user's first page (100 rows in all)", SELECT_USER_PAGE, (USER, None, None, None, 51)),
    ("a heavy user's first page (100,000 rows in all)", SELECT_USER_PAGE,
     (HEAVY_USER, None, None, None, 51)),
    ("a heavy user's later page, team-scoped key", SELECT_USER_PAGE,
     (HEAVY_USER, TEAM, *CURSOR, 51)),
    ("a user's running ones, all at once (the service's list method)", SELECT_USER_RUNNING_PAGE,
     (USER, None, None, None, None)),
    ("a heavy user's running, first page", SELECT_USER_RUNNING_PAGE,
     (HEAVY_USER, None, None, None, 51)),
    ("a heavy user's running, later page, team-scoped key", SELECT_USER_RUNNING_PAGE,
     (HEAVY_USER, TEAM, *CURSOR, 51)),
]
GENERIC = [
    ("generic plan: a heavy user's page", SELECT_USER_PAGE, (HEAVY_USER, TEAM, *CURSOR, 51)),
    ("generic plan: a heavy user's running page", SELECT_USER_RUNNING_PAGE,
     (HEAVY_USER, TEAM, *CURSOR, 51)),
]
OPTIONS = "ANALYZE, BUFFERS, COSTS OFF, SUMMARY OFF"


def block(title: str, rows: list[asyncpg.Record]) -> str:
    plan = "\n".join(r[0] for r in rows)
    return f"#### {title}\n\n```\n{plan}\n```\n"


async def explain_all(db: asyncpg.Connection) -> list[str]:
    out = [block(title, await db.fetch(f"EXPLAIN ({OPTIONS}) {sql}", *params))
           for title, sql, params in CASES]
    await db.execute("SET plan_cache_mode = force_generic_plan")
    for title, sql, params in GENERIC:
        await db.execute(f"PREPARE page ({PARAMETER_TYPES}) AS {sql}")
        values = ", ".join(literal(v) for v in params)
        out.append(block(title, await db.fetch(f"EXPLAIN ({OPTIONS}) EXECUTE page ({values})")))
        await db.execute("DEALLOCATE page")
    return out


async def main() -> None:
    handle, admin_dsn = databases.start_test_postgres()
    template = await databases.create_template(admin_dsn)
    name = await databases.create_test_database(admin_dsn, template)
    db = await asyncpg.connect(with_database(admin_dsn, name))
    try:
        await init_connection(db)
        await db.execute(FILL, ROWS)
        await db.execute("ANALYZE workflow_conversations")
        version = await db.fetchval("SHOW server_version")
        print(f"Postgres {version}, {ROWS:,} rows.\n")
        print("\n".join(await explain_all(db)))
    finally:
        await db.close()
        await databases.drop_database(admin_dsn, name)
        await databases.drop_database(admin_dsn, template)
        if handle is not None:
            handle.cleanup()  # type: ignore[attr-defined]


if __name__ == "__main__":
    asyncio.run(main())
