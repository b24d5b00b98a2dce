"""Graceful shutdown on SIGTERM, bounded by `[server] shutdown_timeout` from the signal to the exit.

aiohttp's runner does the steps in this order, and each step spends part of one budget:
1. it stops listening (no new connections);
2. the `on_shutdown` hooks run: `Shutdown.on_shutdown` (first) starts the clock and tells its
   subscribers, so the webhook dispatcher claims nothing more; then every websocket is closed
   with 1001 (going away) so clients resume elsewhere with `since`;
3. in-flight HTTP requests finish, for at most `HANDLER_SHARE` of the budget (then cancelled);
4. the cleanup contexts run: webhook sends still in flight get what is left of the budget (less
   a reserve for what follows), then they are cancelled and every claim of this instance is
   released (another instance sends those deliveries at once instead of after the lease), and
   the pools close.

A process started by `chatserver serve` also arms a watchdog at the deadline (disarmed when the
last cleanup is done): if a step hangs anyway, the process logs it and exits with FORCED_EXIT_CODE
(its webhook leases then expire as after a crash, so nothing is lost, only sent later).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)

# In-flight requests may use this share of the budget; webhook sends get what is left of it but
# the last RESERVE_SHARE, kept for cancelling, releasing claims and closing pools.
HANDLER_SHARE = 0.5
RESERVE_SHARE = 0.25
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
        self._watchdog: threading.Timer | None = None

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback` as soon as shutdown begins (before sockets close)."""
        self._subscribers.append(callback)

    def begin(self) -> None:
        if self.started_at is not None:
            return
        self.started_at = time.monotonic()
        log.info("shutting down within %.1f s", self.budget)
        if self.enforce:
            self._watchdog = threading.Timer(self.budget, _forced_exit, args=(self.budget,))
            self._watchdog.daemon = True
            self._watchdog.start()
        for callback in self._subscribers:
            try:
                callback()
            except Exception:
                log.exception("shutdown subscriber failed")

    async def on_shutdown(self, _app: web.Application) -> None:
        """The app's first on_shutdown hook."""
        self.begin()

    async def on_cleanup(self, _app: web.Application) -> None:
        """The app's last on_cleanup hook: everything closed in time, disarm the watchdog."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            log.info("shut down in %.1f s", self.elapsed())

    def work_left(self) -> float:
        """Seconds that work in flight may still take: up to the deadline less the reserve (the
        whole budget if shutdown has not begun)."""
        return max(0.0, self.budget * (1 - RESERVE_SHARE) - self.elapsed())

    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at


def _forced_exit(budget: float) -> None:
    log.error("graceful shutdown overran %.1f s; exiting now", budget)
    logging.shutdown()
    os._exit(FORCED_EXIT_CODE)
