"""The API key cache: a key is looked up once per TTL; revocation shows once the entry is gone;
a bad key is refused unasked for its own TTL, and works once that is over if it became good."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from chatserver.auth.keycache import KeyCache
from chatserver.auth.keys import PREFIX_LENGTH, hash_key
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


async def test_an_unknown_key_is_refused_without_a_query_until_its_ttl_is_over(
    database_url: str, db: asyncpg.Connection
) -> None:
    key = "csk_" + "u" * PREFIX_LENGTH + "a-key-nobody-made-yet"
    cache = KeyCache(ttl=3600, unknown_ttl=0.2)
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=2))
    assert await cache.principal(pool, key) is None
    await pool.close()
    # Refused again from memory: a query on the closed pool would raise.
    for _ in range(3):
        assert await cache.principal(pool, key) is None
    # The key is created right after it was refused: it works once the entry has expired.
    await api_keys.create_key(db, "late", None, "u" * PREFIX_LENGTH, hash_key(key))
    await asyncio.sleep(0.3)
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=2))
    try:
        who = await cache.principal(pool, key)
        assert who is not None and who.name == "late"
    finally:
        await pool.close()


async def test_the_unknown_keys_kept_are_bounded(database_url: str) -> None:
    cache = KeyCache(ttl=3600, unknown_ttl=3600, unknown_size=2)
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=2))
    for n in range(5):
        assert await cache.principal(pool, f"csk_{n:012d}secret") is None
    await pool.close()
    assert await cache.principal(pool, f"csk_{4:012d}secret") is None  # still kept
    with pytest.raises(asyncpg.InterfaceError):  # forgotten: looked up (on the closed pool)
        await cache.principal(pool, f"csk_{0:012d}secret")
