"""The API key cache: a key is looked up once per TTL; revocation shows once the entry is gone."""

from __future__ import annotations

from typing import Any

import asyncpg

from chatserver.auth.keycache import KeyCache
from chatserver.config import DatabaseSettings
from chatserver.db.pool import create_pool
from chatserver.store import api_keys


async def revoke(db: asyncpg.Connection, name: str) -> None:
    key_id = await db.fetchval("SELECT id FROM api_keys WHERE name = $1", name)
    assert await api_keys.revoke_key(db, key_id)


async def test_a_revoked_key_is_honoured_after_its_ttl_only(
    database_url: str, db: asyncpg.Connection, make_key: Any
) -> None:
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=2))
    try:
        key = await make_key("cached")
        remembering, looking_up = KeyCache(ttl=3600), KeyCache(ttl=0)
        for cache in (remembering, looking_up):
            who = await cache.principal(pool, key)
            assert who is not None and who.name == "cached"
        await revoke(db, "cached")
        # Within its TTL the entry answers without asking Postgres (the documented trade-off)...
        assert await remembering.principal(pool, key) is not None
        # ...and with no TTL (or after it) the revocation is seen at once.
        assert await looking_up.principal(pool, key) is None
        assert await KeyCache(ttl=3600).principal(pool, key) is None
        assert await KeyCache(ttl=3600).principal(pool, key + "x") is None
    finally:
        await pool.close()
