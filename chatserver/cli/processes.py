"""`chatserver serve --workers N`: N server processes sharing one port, to use every core.

The parent prepares once (the embedded Postgres when no database URL is set, migrations, the first
API key), then starts N child processes that each run the whole server on the same host and port
with SO_REUSEPORT; the kernel spreads new connections across them. Each child is an ordinary
instance, so fan-out between them goes through Redis: N > 1 without `[redis] url` is refused.

The parent forwards SIGTERM and SIGINT to the children (each shuts down gracefully) and waits for
them; a child that dies on its own is started again after RESTART_DELAY seconds.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import asyncpg

from chatserver.cli.serve import create_first_key, run_serve
from chatserver.config import ConfigError, Settings
from chatserver.db.bootstrap import resolve_dsn, run_migrations

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0
POLL_INTERVAL = 0.2
STOP_GRACE = 5.0  # seconds beyond [server] shutdown_timeout before a child is killed


def check_processes(settings: Settings, processes: int) -> None:
    if processes < 1:
        raise ConfigError("--workers must be at least 1")
    if processes > 1 and not settings.redis.url:
        raise ConfigError(
            "--workers > 1 needs [redis] url (CHATSERVER_REDIS_URL): the in-process bus cannot "
            "fan messages out between processes"
        )


async def prepare(settings: Settings) -> Settings:
    """Start the embedded Postgres if needed, migrate, create the first key; settings for children.

    The embedded server (if any) belongs to this process and stops when it exits.
    """
    dsn = await resolve_dsn(settings)
    await run_migrations(dsn, partitions=settings.database.partitions)
    conn = await asyncpg.connect(dsn)
    try:
        await create_first_key(conn, settings.server.port)
    finally:
        await conn.close()
    return settings.replace(database={"url": dsn})


def child_main(settings: Settings) -> None:
    run_serve(settings, reuse_port=True, bootstrap=False)


class ServerProcesses:
    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self.processes = processes
        self.context = multiprocessing.get_context("spawn")
        self.children: list[BaseProcess] = []
        self.stopping = False

    def start_child(self) -> BaseProcess:
        child = self.context.Process(target=child_main, args=(self.settings,), daemon=False)
        child.start()
        log.info("server process %s started", child.pid)
        return child

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.children = [self.start_child() for _ in range(self.processes)]
        while not self.stopping:
            time.sleep(POLL_INTERVAL)
            self._restart_dead()
        return self._stop()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _restart_dead(self) -> None:
        for i, child in enumerate(self.children):
            if child.is_alive() or self.stopping:
                continue
            log.warning("server process %s exited with %s; starting another in %.0fs",
                        child.pid, child.exitcode, RESTART_DELAY)
            time.sleep(RESTART_DELAY)
            if not self.stopping:
                self.children[i] = self.start_child()

    def _stop(self) -> int:
        for child in self.children:
            if child.is_alive():
                child.terminate()  # SIGTERM: each child shuts down gracefully
        deadline = time.monotonic() + self.settings.server.shutdown_timeout + STOP_GRACE
        for child in self.children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                log.warning("server process %s did not stop in time; killing it", child.pid)
                child.kill()
                child.join()
        return 0


def run_processes(settings: Settings, processes: int) -> int:
    """Prepare once, then run `processes` server processes until SIGTERM/SIGINT."""
    check_processes(settings, processes)
    prepared = asyncio.run(prepare(settings))
    return ServerProcesses(prepared, processes).run()
