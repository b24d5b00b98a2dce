"""Service fixtures: a small pool on the test's database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from chatserver.config import DatabaseSettings
from chatserver.db.pool import create_pool


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=4))
    yield pool
    await pool.close()
