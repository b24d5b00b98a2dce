"""A listener session, watched: it ends with an exception when the session dies or goes silent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def watch(session: asyncio.Task[None], alive_at: Callable[[], float], stall_timeout: float,
                name: str) -> None:
    """Wait for `session` to end, or for `alive_at()` (a loop time) to fall `stall_timeout` behind;
    raise why. The session is expected to hear from its server at least every `stall_timeout / 3`
    (it pings that often)."""
    loop = asyncio.get_running_loop()
    while True:
        done, _ = await asyncio.wait({session}, timeout=stall_timeout / 3)
        if done:
            session.result()  # raises what ended it
            raise ConnectionError(f"the {name} listener ended")
        silent = loop.time() - alive_at()
        if silent > stall_timeout:
            raise TimeoutError(f"the {name} listener stalled for {silent:.1f}s")
