"""Memory after bursts to sockets that do not read: does the server give it back?

`python -m bench.memory_burst` starts `chatserver serve` (embedded Postgres, in-process bus),
opens `--sockets` websockets spread over `--rooms` conversations that complete the handshake and
then never read (a 4 KiB receive buffer, reading paused), and measures the server's RSS:

1. before: the sockets connected and idle, nothing sent yet;
2. for each of `--rounds` rounds: a burst of `--messages` messages of `--size` bytes into every
   room over REST, then quiet: the server cuts off the sockets that went over their budget
   (`[realtime] send_queue_bytes`, close 4008, aborted after `close_timeout`), a fresh set of
   idle sockets replaces them, and after `--quiet` seconds the RSS is read again.

Each `--variant NAME[@CHECKOUT]:ENV=VALUE,...` runs the whole thing on a fresh server with those
settings (and from that checkout, e.g. main's worktree), so a build and its baseline are measured
in the same run. A benchmark, not a test: nothing here
runs in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import socket
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import psutil

from bench import servers

HOST = servers.HOST


class Silent(asyncio.Protocol):
    """A websocket client that reads its handshake answer and nothing after it."""

    def __init__(self) -> None:
        self.buffer = b""
        self.upgraded: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.lost = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded.done() and b"\r\n\r\n" in self.buffer:
            self.upgraded.set_result(self.buffer.startswith(b"HTTP/1.1 101"))
            assert self.transport is not None
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_result(False)
        self.lost.set()


async def silent_socket(port: int, room: str, key: str) -> Silent:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (HOST, port))
    _, protocol = await loop.create_connection(Silent, sock=sock)
    nonce = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /ws/conversations/{room} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
               f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {key}\r\n\r\n")
    assert protocol.transport is not None
    protocol.transport.write(request.encode())
    if not await asyncio.wait_for(protocol.upgraded, 30):
        raise RuntimeError(f"no upgrade: {protocol.buffer[:200]!r}")
    return protocol


@dataclass
class Result:
    name: str
    before_mb: float = 0.0
    peaks_mb: list[float] = field(default_factory=list)
    after_mb: list[float] = field(default_factory=list)
    cut_off: list[int] = field(default_factory=list)


def open_sockets(port: int) -> int:
    """The server's own count (`chatserver_sockets_open`)."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return int(float(re.search(r"^chatserver_sockets_open (\S+)$", text, re.M)[1]))


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


async def connect_all(port: int, rooms: list[str], key: str, count: int) -> list[Silent]:
    made: list[Silent] = []
    for start in range(0, count, 100):  # 100 at a time: the accept queue stays short
        made += await asyncio.gather(*(silent_socket(port, rooms[i % len(rooms)], key)
                                       for i in range(start, min(count, start + 100))))
    return made


async def burst(port: int, rooms: list[str], key: str, messages: int, size: int,
                pid: int) -> float:
    """Post into every room at once; the highest RSS seen meanwhile."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = orjson.dumps({"content": "x" * size})
    peak = 0.0

    async def room(cid: str) -> None:
        async with aiohttp.ClientSession(headers=headers) as session:
            for _ in range(messages):
                url = f"http://{HOST}:{port}/conversations/{cid}/messages"
                async with session.post(url, data=body) as resp:
                    assert resp.status == 201, await resp.text()

    task = asyncio.gather(*(room(cid) for cid in rooms))
    while not task.done():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.1)
    await task
    return peak


async def measure(args: argparse.Namespace, name: str, env: dict[str, str],
                  shared: servers.Shared) -> Result:
    env = {"CHATSERVER_REALTIME_CLOSE_TIMEOUT": "2", **env}
    side = servers.start_ours(shared, env=env, redis=False)
    try:
        port, pid, key = side.ports[0], side.procs[0].pid, str(side.token)
        rooms = servers.create_conversations(side, args.rooms)
        result = Result(name)
        sockets = await connect_all(port, rooms, key, args.sockets)
        await asyncio.sleep(args.quiet)
        result.before_mb = rss_mb(pid)
        for _ in range(args.rounds):
            result.peaks_mb.append(await burst(port, rooms, key, args.messages, args.size, pid))
            await asyncio.sleep(args.quiet)
            result.cut_off.append(args.sockets - open_sockets(port))
            for s in sockets:
                if s.transport is not None and not s.lost.is_set():
                    s.transport.abort()  # a client that gives up, as the server's cut does
            sockets = await connect_all(port, rooms, key, args.sockets)
            await asyncio.sleep(args.quiet)
            result.after_mb.append(rss_mb(pid))
        for s in sockets:
            if s.transport is not None:
                s.transport.abort()
        return result
    finally:
        side.close()


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [f"{args.sockets} sockets that do not read in {args.rooms} rooms; each round: "
             f"{args.messages} messages of {args.size} B into every room, then {args.quiet:g} s "
             f"quiet and a fresh set of idle sockets.", "",
             "| variant | RSS before MB | peak MB per round | after MB per round | after/before "
             "| sockets cut off per round |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        ratio = r.after_mb[-1] / r.before_mb
        lines.append(f"| {r.name} | {r.before_mb:.0f} | {', '.join(f'{p:.0f}' for p in r.peaks_mb)}"
                     f" | {', '.join(f'{a:.0f}' for a in r.after_mb)} | {ratio:.2f} "
                     f"| {', '.join(map(str, r.cut_off))} |")
    return "\n".join(lines)


def parse_variant(text: str) -> tuple[str, str | None, dict[str, str]]:
    name, _, settings = text.partition(":")
    name, _, src = name.partition("@")
    env = dict(item.split("=", 1) for item in settings.split(",") if item)
    return name, src or None, env


async def main_async(args: argparse.Namespace) -> None:
    shared = servers.Shared.create(None, uvloop=True)
    try:
        results = []
        for name, src, env in map(parse_variant, args.variant or ["default:"]):
            started = time.monotonic()
            shared.ours_src = Path(src).resolve() if src else None
            results.append(await measure(args, name, env, shared))
            print(f"{name}: {time.monotonic() - started:.0f} s", flush=True)
        print(report(results, args))
    finally:
        shared.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--size", type=int, default=16_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quiet", type=float, default=8.0)
    parser.add_argument("--variant", action="append",
                        help="NAME:CHATSERVER_X=value,... (repeatable; default: one, as is)")
    servers._raise_nofile()
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
