"""Graceful shutdown on SIGTERM, bounded by `[server] shutdown_timeout` from the signal to the exit.

aiohttp's runner does the steps in this order, and each step spends part of one budget:
1. it stops listening (no new connections);
2. the `on_shutdown` hooks run: `Shutdown.on_shutdown` (first) starts the clock and tells its
   subscribers, so the webhook dispatcher claims nothing more; then every websocket is closed
   with 1001 (going away) so clients resume elsewhere with `since`;
3. in-flight HTTP requests finish, for at most `HANDLER_SHARE` of the budget (then cancelled);
4. the cleanup contexts run: webhook sends still in flight get what is left of the budget, then
   they are cancelled and every claim of this instance is released at once (another instance
   sends those deliveries right away instead of after the lease), and the pools close.

A process started by `chatserver serve` also arms a watchdog at the deadline: if a step hangs
anyway, the process logs it and exits with FORCED_EXIT_CODE (the leases then expire as after a
crash, so nothing is lost, only later).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger("chatserver.shutdown")

# In-flight requests may use this share of the budget; webhook sends get the rest.
HANDLER_SHARE = 0.5
FORCED_EXIT_CODE = 70


def handler_timeout(budget: float) -> float:
    """What aiohttp may wait for in-flight requests (its `shutdown_timeout`)."""
    return budget * HANDLER_SHARE


class Shutdown:
    """The shutdown clock of one app: when it started, what is left, who to tell."""

    def __init__(self, budget: float, *, enforce: bool = False) -> None:
        self.budget = budget
        self.enforce = enforce  # a real process: exit at the deadline whatever happens
        self.started_at: float | None = None
        self._subscribers: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback` as soon as shutdown begins (before sockets close)."""
        self._subscribers.append(callback)

    def begin(self) -> None:
        if self.started_at is not None:
            return
        self.started_at = time.monotonic()
        log.info("shutting down within %.1f s", self.budget)
        if self.enforce:
            watchdog = threading.Timer(self.budget, _forced_exit, args=(self.budget,))
            watchdog.daemon = True
            watchdog.start()
        for callback in self._subscribers:
            try:
                callback()
            except Exception:
                log.exception("shutdown subscriber failed")

    async def on_shutdown(self, _app: web.Application) -> None:
        """The app's first on_shutdown hook."""
        self.begin()

    def remaining(self) -> float:
        """Seconds left before the deadline (the whole budget if shutdown has not begun)."""
        if self.started_at is None:
            return self.budget
        return max(0.0, self.budget - (time.monotonic() - self.started_at))


def _forced_exit(budget: float) -> None:
    log.error("graceful shutdown overran %.1f s; exiting now", budget)
    logging.shutdown()
    os._exit(FORCED_EXIT_CODE)
