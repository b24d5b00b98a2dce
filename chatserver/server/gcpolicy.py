"""Garbage collection for a long-running server: short pauses on a heap of long-lived objects.

CPython's full (generation 2) collection walks every tracked object, and a server holds hundreds
of thousands that live as long as the process (modules, the app, pools, compiled schemas): with a
1,000-socket room a full collection paused the event loop for 100-220 ms (BENCHMARKS.md,
performance work 14), which every socket sees as latency. After startup, `gc.freeze()` moves
everything then alive into the permanent generation, which collections skip.
"""

from __future__ import annotations

import gc
import logging

from aiohttp import web

log = logging.getLogger(__name__)


async def freeze_startup_objects(app: web.Application) -> None:
    """on_startup hook (last): collect once, then exempt every surviving object from the GC."""
    gc.collect()
    gc.freeze()
    log.info("%d objects frozen out of garbage collection", gc.get_freeze_count())
