"""A conversation's history from Postgres, by seq: the one reader behind REST pages, websocket
replay (`since`, with the streams still open below it) and the hub's gap fill."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg

from chatserver.store import messages as store
from chatserver.store import streams as stream_store

PAGE = 500  # rows per query when reading forward


async def page(
    pool: asyncpg.Pool, conversation_id: uuid.UUID, *, before: int | None, after: int | None,
    limit: int, ascending: bool,
) -> list[asyncpg.Record]:
    """One keyset page between the `before` and `after` seqs (both exclusive)."""
    async with pool.acquire() as conn:
        return await store.list_messages(
            conn, conversation_id, before=before, after=after, limit=limit, ascending=ascending
        )


async def pages_after(
    pool: asyncpg.Pool, conversation_id: uuid.UUID, after: int, *, up_to: int | None = None,
) -> AsyncIterator[list[asyncpg.Record]]:
    """Every message above seq `after` (up to `up_to` when given) in seq order, a page at a time;
    each page is read with a connection of its own, released before the page is yielded."""
    while up_to is None or after < up_to:
        rows = await page(pool, conversation_id, before=None, after=after, limit=PAGE,
                          ascending=True)
        if rows:
            yield rows
            after = rows[-1]["seq"]
        if len(rows) < PAGE:
            return


async def open_streams(
    pool: asyncpg.Pool, conversation_id: uuid.UUID, up_to: int
) -> list[asyncpg.Record]:
    """The streams still open among the messages up to seq `up_to` (a resume sends them again:
    the client has them only as far as it got)."""
    async with pool.acquire() as conn:
        return await stream_store.get_open_streams(conn, conversation_id, up_to)
