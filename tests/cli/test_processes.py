"""`chatserver serve --workers N`: processes share one port, all serve, and fan out to each other
through Redis; without a Redis URL more than one worker is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from tests.realtime.helpers import Watcher, ready
from tests.redis_server import RedisServer, free_port
from tests.webhooks.helpers import eventually

SOCKETS = 16  # all on one worker by chance: 2 * 2**-16


def clean_env() -> dict[str, str]:
    """This environment without CHATSERVER_* settings (run where no config.toml is)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CHATSERVER_")}


def test_more_than_one_worker_needs_redis(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "chatserver", "serve", "--workers", "2"],
        env={**clean_env(), "CHATSERVER_REDIS_URL": "",
             "CHATSERVER_DATABASE_URL": "postgresql://unused/none"},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "redis" in done.stderr.lower() and "--workers" in done.stderr


@pytest.fixture
async def workers(database_url: str, redis_server: RedisServer,
                  tmp_path: Path) -> AsyncIterator[tuple[str, psutil.Process]]:
    port = free_port()
    env = {**clean_env(), "CHATSERVER_DATABASE_URL": database_url,
           "CHATSERVER_REDIS_URL": redis_server.url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatserver", "serve", "--workers", "2", "--host", "127.0.0.1",
        "--port", str(port), env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await eventually(lambda: both_ready(base, psutil.Process(proc.pid)), timeout=60)
        yield base, psutil.Process(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0


async def both_ready(base: str, parent: psutil.Process) -> bool:
    """Two worker processes listen on the port, and it answers."""
    port = int(base.rsplit(":", 1)[1])
    listening = [
        child for child in parent.children()
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
               for c in child.net_connections(kind="tcp"))
    ]
    if len(listening) < 2:
        return False
    try:
        async with aiohttp.ClientSession() as session, session.get(base + "/healthz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


def owners(parent: psutil.Process, port: int, client_ports: set[int]) -> dict[int, int]:
    """How many of our client connections each worker process holds."""
    held = {}
    for child in parent.children():
        held[child.pid] = sum(
            1 for c in child.net_connections(kind="tcp")
            if c.laddr and c.laddr.port == port and c.raddr and c.raddr.port in client_ports
        )
    return held


async def test_two_workers_share_the_port_and_fan_out(
    workers: tuple[str, psutil.Process], make_key: Any
) -> None:
    base, parent = workers
    key = await make_key("admin")
    headers = {"Authorization": f"Bearer {key}"}
    # A fresh connection per request, so requests land on either worker.
    fresh = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(base, headers=headers, connector=fresh) as rest, \
            aiohttp.ClientSession(base, headers=headers) as sockets:
        async with rest.post("/conversations", json={"channel": "API"}) as resp:
            assert resp.status == 201
            cid = (await resp.json())["id"]
        watchers = []
        for _ in range(SOCKETS):
            ws = await sockets.ws_connect(f"/ws/conversations/{cid}")
            await ready(ws)
            watchers.append(Watcher(ws))
        client_ports = {w.ws.get_extra_info("sockname")[1] for w in watchers}
        held = owners(parent, int(base.rsplit(":", 1)[1]), client_ports)
        # (The parent's children include multiprocessing's resource tracker, which holds none.)
        assert len([n for n in held.values() if n]) == 2, held
        assert sum(held.values()) == SOCKETS
        for n in range(10):
            async with rest.post(f"/conversations/{cid}/messages",
                                 json={"content": f"m{n}"}) as resp:
                assert resp.status == 201
        await asyncio.gather(*(w.has_seq(10) for w in watchers))
        for watcher in watchers:
            assert watcher.seqs == list(range(1, 11))
        await asyncio.gather(*(w.close() for w in watchers))
