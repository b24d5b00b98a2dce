"""Handing memory freed after a burst back to the operating system (glibc's `malloc_trim`).

A burst to many sockets allocates many buffers at once (joined frame bytes, transport buffers,
frames queued for sockets that do not read); once they are written or the sockets are cut off,
Python frees them, but glibc keeps most of the freed pages in its heaps for later, so the
process's RSS stays at the burst's peak. `trim_loop` calls `malloc_trim(0)` every
`[performance] memory_trim_interval` seconds, in a worker thread (it walks the heaps: a few
milliseconds for hundreds of MB, which the event loop does not wait for). Where the C library has
no `malloc_trim` (musl, macOS), the loop logs that once and ends.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_TASK = "memory_trim"


def load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


async def trim_loop(interval: float) -> None:
    trim = load_malloc_trim()
    if trim is None:
        log.info("no malloc_trim in this C library: freed memory is returned as it allows")
        return
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(trim, 0)
