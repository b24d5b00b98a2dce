"""Memory freed after a burst goes back to the operating system while the server runs."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import psutil
import pytest

from chatserver.app import create_app
from chatserver.appkeys import SUPERVISOR
from chatserver.config import Settings
from chatserver.server.memory import TRIM_TASK, load_malloc_trim
from tests.realtime.helpers import WAIT

MB = 2**20
PIECE = 20_000  # below glibc's mmap threshold: these live in its heap


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


@pytest.mark.skipif(load_malloc_trim() is None, reason="no malloc_trim in this C library")
async def test_freed_heap_memory_is_returned_while_the_server_runs(
    settings: Settings, aiohttp_client: Any
) -> None:
    """Pieces freed between pieces still in use leave holes glibc keeps; the trim task hands
    them back (without it RSS stays where the burst left it)."""
    client = await aiohttp_client(create_app(settings.replace(
        performance={"memory_trim_interval": 0.05})))
    assert client.app[SUPERVISOR].health[TRIM_TASK].state == "running"
    kept, freed = [], []
    for _ in range(5000):  # 200 MB, every other piece kept
        kept.append(bytes(PIECE))
        freed.append(bytes(PIECE))
    peak = rss()
    del freed
    gc.collect()
    async with asyncio.timeout(WAIT):
        while rss() > peak - 50 * MB:  # ~75 MB of the 100 MB freed is whole pages
            await asyncio.sleep(0.05)
    assert len(kept) == 5000
