"""The isolation scenario's generator: one tenant's REST latency, quiet and while another floods.

    python -m bench.isolation '<spec as JSON>'   (run by bench.run like bench.loadgen)

One server, one run, two phases of `duration` seconds. In both, the quiet tenant (`tenants[0]`)
calls REST at `victim_rate` calls/s on a fixed schedule (open loop: a slow answer does not delay
the next call), alternating a message post and a history page of its conversation. The first
phase is the baseline; in the second the flooding tenant (`tenants[1]`) runs `bench.flood` (its
own process, at the lowest CPU priority, so that the quiet tenant's timing on the shared
generator core is not starved by it), started `ramp` seconds before the measuring begins.

Reported: p50/p99/max of both phases, the p99 ratio (target: at most 2), the quiet tenant's
failed calls, and what the flood did and how the server answered it (`flood_*`).

With `slow_endpoint_delay` set, webhooks too: the quiet tenant has a team-wide endpoint for its
messages at a receiver here that answers at once, and its posts' publish -> webhook latency is
reported per phase (`*_webhook_p50_ms`, `*_webhook_p99_ms`, `webhook_p99_ratio`); the flooding
tenant has an endpoint for all its events at one that answers after `slow_endpoint_delay`
seconds, and at the start of the flood creates `flood_conversations` conversations (each a
`conversation.created` for the slow endpoint, each its own queue).
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from bench.loadgen import Commands, emit
from bench.peers.common import install_uvloop, raise_nofile_limit
from bench.stats import percentiles
from bench.webhook_sink import WebhookSink

FLOOD_STOP_MARGIN = 30.0  # seconds past its own end before the flood process is killed


@dataclass
class Spec:
    targets: list[str]  # websocket base URLs; the first one is used
    tenants: list[dict[str, str]]  # [{"key", "room"}]: the quiet tenant, then the flooding one
    duration: float = 10.0
    victim_rate: float = 40.0
    ramp: float = 1.0
    floods: dict[str, int] = field(default_factory=dict)  # see bench.flood.FLOODS
    uvloop: bool = True
    slow_endpoint_delay: float = 0.0  # > 0: the webhook part (see the module docstring)
    flood_conversations: int = 0
    webhook_drain: float = 3.0  # seconds after a phase for its webhooks to arrive

    @property
    def base(self) -> str:
        return self.targets[0].replace("ws://", "http://", 1)


class Victim:
    """The quiet tenant's calls and their latencies."""

    def __init__(self, session: aiohttp.ClientSession, spec: Spec) -> None:
        tenant = spec.tenants[0]
        self.session = session
        self.spec = spec
        self.headers = {"Authorization": f"Bearer {tenant['key']}"}
        self.messages = f"{spec.base}/conversations/{tenant['room']}/messages"
        self.failed = 0

    async def phase(self, seconds: float) -> list[int]:
        latencies: list[int] = []
        interval = 1.0 / self.spec.victim_rate
        start = time.monotonic()
        calls = []
        n = 0
        while (due := start + n * interval) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            calls.append(asyncio.create_task(self.call(n, latencies)))
            n += 1
        await asyncio.gather(*calls)
        return latencies

    async def call(self, n: int, latencies: list[int]) -> None:
        t0 = time.perf_counter_ns()
        try:
            if n % 2:
                request = self.session.get(f"{self.messages}?limit=20", headers=self.headers)
            else:
                stamp = f"~t{time.monotonic_ns()}~"  # read by the webhook sink
                request = self.session.post(self.messages, headers=self.headers,
                                            json={"content": f"quiet {n} {stamp}"})
            async with request as resp:
                await resp.read()
                ok = resp.status in (200, 201)
        except (aiohttp.ClientError, OSError):
            ok = False
        latencies.append(time.perf_counter_ns() - t0)
        self.failed += not ok


class Hooks:
    """The webhook part: a fast receiver for the quiet tenant, a slow one for the flooding one."""

    def __init__(self, session: aiohttp.ClientSession, spec: Spec) -> None:
        self.session = session
        self.spec = spec
        self.sink = WebhookSink()
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def slow(self, request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(self.spec.slow_endpoint_delay)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/quiet", self.sink.handle)
        app.router.add_post("/slow", self.slow)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        await self.endpoint(self.spec.tenants[0], "/quiet", ["message.created"])
        await self.endpoint(self.spec.tenants[1], "/slow", ["*"])

    async def endpoint(self, tenant: dict[str, str], path: str, event_types: list[str]) -> None:
        async with self.session.post(
            f"{self.spec.base}/webhook-endpoints", headers=_auth(tenant),
            json={"url": self.base + path, "event_types": event_types},
        ) as resp:
            assert resp.status == 201, await resp.text()

    async def flood_conversations(self) -> None:
        tenant = self.spec.tenants[1]

        async def create() -> None:
            async with self.session.post(f"{self.spec.base}/conversations",
                                         headers=_auth(tenant), json={"channel": "API"}) as resp:
                await resp.read()

        await asyncio.gather(*(create() for _ in range(self.spec.flood_conversations)))

    async def latencies_after(self, seen: int) -> list[int]:
        """The quiet tenant's webhook latencies received since `seen`, after the drain."""
        await asyncio.sleep(self.spec.webhook_drain)
        return list(self.sink.latencies[seen:])

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _auth(tenant: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant['key']}"}


def start_flood(spec: Spec, seconds: float) -> subprocess.Popen[bytes]:
    tenant = spec.tenants[1]
    flood = {"base": spec.base, "key": tenant["key"], "room": tenant["room"], "seconds": seconds,
             "floods": spec.floods, "uvloop": spec.uvloop}
    return subprocess.Popen([sys.executable, "-m", "bench.flood", orjson.dumps(flood).decode()],
                            stdout=subprocess.PIPE)


def flood_outcome(proc: subprocess.Popen[bytes], seconds: float) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=seconds + FLOOD_STOP_MARGIN)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"flood_error": "the flood process did not finish"}
    if proc.returncode or not out.strip():
        return {"flood_error": f"the flood process exited with {proc.returncode}"}
    report = orjson.loads(out.splitlines()[-1])
    flat = {f"flood_{part}_{name}": count
            for part, counts in report.items() for name, count in counts.items()}
    return {key.replace(":", "_"): value for key, value in flat.items()}


def _figures(prefix: str, latencies: list[int]) -> dict[str, Any]:
    return {f"{prefix}_{name}": value for name, value in percentiles(latencies).items()}


async def amain(spec: Spec) -> None:
    commands = Commands()
    await commands.start()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        hooks = Hooks(session, spec) if spec.slow_endpoint_delay > 0 else None
        if hooks is not None:
            await hooks.start()
        victim = Victim(session, spec)
        await victim.phase(1.0)  # warm-up: connections, prepared statements
        victim.failed = 0
        emit("connected", sockets=0, ready=0, failed=0)
        await commands.wait("go")
        hooked = {}
        seen = len(hooks.sink.latencies) if hooks else 0
        quiet = await victim.phase(spec.duration)
        if hooks is not None:
            hooked["baseline_webhook"] = await hooks.latencies_after(seen)
            seen = len(hooks.sink.latencies)
        flood_seconds = spec.ramp + spec.duration
        flood = await asyncio.to_thread(start_flood, spec, flood_seconds)
        if hooks is not None:
            await hooks.flood_conversations()
        await asyncio.sleep(spec.ramp)
        flooded = await victim.phase(spec.duration)
        if hooks is not None:
            hooked["flood_webhook"] = await hooks.latencies_after(seen)
            await hooks.close()
        outcome = await asyncio.to_thread(flood_outcome, flood, flood_seconds)
        emit("measured")
    figures = {**_figures("baseline", quiet), **_figures("flood", flooded), **outcome,
               "victim_failed": victim.failed}
    for prefix, latencies in hooked.items():
        figures.update(_figures(prefix, latencies))
        figures[f"{prefix}_received"] = len(latencies)
    base, under = figures["baseline_p99_ms"], figures["flood_p99_ms"]
    figures["p99_ratio"] = round(under / base, 2) if base and under else None
    if hooked:
        base, under = figures["baseline_webhook_p99_ms"], figures["flood_webhook_p99_ms"]
        figures["webhook_p99_ratio"] = round(under / base, 2) if base and under else None
    emit("result", **figures)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    given = orjson.loads(argv[0])
    known = {f.name for f in dataclasses.fields(Spec)}
    spec = Spec(**{k: v for k, v in given.items() if k in known})  # the runner sends more
    raise_nofile_limit()
    install_uvloop(spec.uvloop)
    asyncio.run(amain(spec))


if __name__ == "__main__":
    main()
