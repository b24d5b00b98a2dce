"""After startup every object then alive is frozen out of the garbage collector's walks."""

from __future__ import annotations

import gc

from aiohttp import web

from chatserver.server.gcpolicy import freeze_startup_objects


async def test_startup_objects_are_frozen() -> None:
    gc.unfreeze()
    survivor = {"held": [object()]}  # a tracked container alive at startup
    try:
        await freeze_startup_objects(web.Application())
        assert gc.get_freeze_count() > 0
        assert not any(o is survivor for o in gc.get_objects())  # frozen: not walked
    finally:
        gc.unfreeze()
