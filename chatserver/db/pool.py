"""The asyncpg pool: JSON and JSONB decoded with orjson, one setup for every connection, and the
session settings of `[database]` (plan_cache_mode, synchronous_commit) on every connection.

A released connection is not reset with asyncpg's default reset query (advisory unlock, CLOSE ALL,
UNLISTEN *, RESET ALL: a round trip on every release, ~10 % of the write path's CPU). Nothing here
leaves session state behind: transactions are context managers (asyncpg still rolls back one left
open), advisory locks are transaction-scoped, and the one LISTEN unlistens itself.
"""

from __future__ import annotations

import asyncpg
import orjson

from chatserver.config import DatabaseSettings


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=_dumps, decoder=orjson.loads, format="text"
        )


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing beyond asyncpg's own rollback of an open transaction."""


async def create_pool(dsn: str, settings: DatabaseSettings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        command_timeout=settings.command_timeout,
        init=init_connection,
        reset=keep_session,
        server_settings={"plan_cache_mode": settings.plan_cache_mode,
                         "synchronous_commit": settings.synchronous_commit},
    )
    assert pool is not None
    return pool
