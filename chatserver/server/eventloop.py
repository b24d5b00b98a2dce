"""The server's event loop: uvloop's when it is installed and wanted, asyncio's otherwise."""

from __future__ import annotations

import asyncio
import importlib
import logging

log = logging.getLogger(__name__)


def new_event_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    """A new loop, and a log line saying which one runs (and why, when it is not uvloop)."""
    if use_uvloop:
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            log.info("event loop: asyncio (uvloop is not installed on this platform)")
        else:
            log.info("event loop: uvloop %s", uvloop.__version__)
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    else:
        log.info("event loop: asyncio ([performance] uvloop = false)")
    return asyncio.new_event_loop()
