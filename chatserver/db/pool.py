"""The asyncpg pool: JSON and JSONB decoded with orjson, one setup for every connection."""

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


async def create_pool(dsn: str, settings: DatabaseSettings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        command_timeout=settings.command_timeout,
        init=init_connection,
    )
    assert pool is not None
    return pool
