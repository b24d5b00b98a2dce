"""Helpers for the workflow conversation tests: a pool on the test's database, row counting."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from chatserver.db.pool import init_connection

COUNT_ROWS = "SELECT count(*) FROM workflow_conversations"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A real asyncpg pool on the test's own database, set up as the app sets up its pool."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8, init=init_connection)
    assert pool is not None
    yield pool
    await pool.close()


def invalid_names(problem: object) -> set[str]:
    return {name for name, _ in problem.invalid_params}  # type: ignore[attr-defined]
