"""The server's event loop: uvloop's when it is installed and wanted, asyncio's otherwise."""

from __future__ import annotations

import asyncio
import importlib
import logging

log = logging.getLogger(__name__)


def new_event_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            log.info("uvloop is not installed; running on asyncio's event loop")
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()
