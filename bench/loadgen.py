"""The load generator: its own process, driven by the runner through JSON lines.

    python -m bench.loadgen '<spec as JSON>'      (see Spec; the runner pins it with taskset)

It opens `len(rooms) * per_room` sockets spread over the targets (socket i goes to target
i % len(targets), so a room's subscribers are split across instances), warms up (`WARM_UP`
messages into every room over REST, waits until every socket has them, then forgets them),
prints `{"event": "connected"}` and waits for `go` on stdin. It publishes at `rate` messages/s,
or as fast as the server takes them (`rate` null: each room keeps at most `window` messages in
flight, judged by one probe socket per room), stops after `duration` seconds or `max_messages`,
waits up to `drain` seconds for every socket to receive every message of its room, prints
`{"event": "measured"}` and then one `{"event": "result", ...}` line, and exits. Idle mode
(`steps`) connects in steps and waits for `next` after each one. Every phase is bounded in time;
targets are loopback only.

The timestamp of each message travels in its content (`~t<time.monotonic_ns()>~`), so latency is
publish (just before the request is written) to receive (the frame handed to us by the library).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.clients import (
    CONNECT_TIMEOUT,
    Receiver,
    Tally,
    auth_headers,
    connect_aiohttp,
    connect_picows,
    connect_websockets,
    socket_url,
)
from bench.peers.common import install_uvloop, raise_nofile_limit
from bench.rawhttp import RawHttp
from bench.stats import percentiles
from bench.webhook_sink import WebhookSink

SATURATED = 0.9  # generator CPU share of one core above which its figures measure the client
STEP_TIMEOUT = 120.0  # seconds the runner may take to answer a step
POLL = 0.005
# Messages per room before the measured phase: the first messages after a start pay for first use
# (connections, prepared statements, cold code paths; 60-80 ms for our server's first few),
# which is not what a running server does.
WARM_UP = 5


@dataclass
class Spec:
    targets: list[str]  # websocket base URLs, e.g. ws://127.0.0.1:8080
    rooms: list[str]
    per_room: int = 1
    protocol: str = "chat"  # chat | socketio
    client: str = "picows"  # picows | aiohttp | websockets
    token: str | None = None
    publish_target: int = 0  # index into targets of the instance publishers talk to
    via: str = "rest"  # rest | ws (extra publisher sockets) | members (every socket posts)
    publishers: int = 8
    rate: float | None = None  # messages/s over all rooms; None = as fast as possible
    window: int = 20
    duration: float = 5.0
    max_messages: int = 1_000_000
    drain: float = 10.0
    steps: list[int] = field(default_factory=list)  # idle mode: sockets after each step
    touch: bool = False  # idle mode: one message per room after the last step
    sample_sockets: int = 200  # sockets whose latency is recorded (spread evenly)
    connect_concurrency: int = 200
    connect_timeout: float = 120.0
    source_ips: list[str] = field(default_factory=list)  # 127.0.0.x, past ~28k per target
    compress: int = 0  # aiohttp client only: offer permessage-deflate when 15
    uvloop: bool = True
    content_bytes: int = 0  # padding added to each message's content
    webhook_port: int = 0  # when set, receive the server's webhooks on 127.0.0.1:<port>
    webhooks_per_message: int = 1  # endpoints each message is delivered to
    webhook_delay_ms: float = 0.0  # the receiver answers after this long


def _check_loopback(spec: Spec) -> None:
    for url in spec.targets:
        host = urlsplit(url).hostname or ""
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise SystemExit(f"loadgen: only loopback targets, got {url}")
    for ip in spec.source_ips:
        if not ipaddress.ip_address(ip).is_loopback:
            raise SystemExit(f"loadgen: only loopback source addresses, got {ip}")


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(orjson.dumps({"event": event, **fields}).decode() + "\n")
    sys.stdout.flush()


class Commands:
    """Lines from the runner on stdin (`go`, `next`), read without threads."""

    def __init__(self) -> None:
        self.reader = asyncio.StreamReader()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        protocol = asyncio.StreamReaderProtocol(self.reader)
        await loop.connect_read_pipe(lambda: protocol, sys.stdin)

    async def wait(self, word: str) -> None:
        line = await asyncio.wait_for(self.reader.readline(), STEP_TIMEOUT)
        if line.strip().decode() != word:
            raise SystemExit(f"loadgen: expected {word!r} from the runner, got {line!r}")


class Generator:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.tally = Tally()
        self.sockets: list[Receiver] = []
        self.rooms_of: list[int] = []  # room index of each socket
        self.handles: list[Any] = []
        self.published = [0] * len(spec.rooms)  # requests sent per room
        self.persisted = [0] * len(spec.rooms)  # acknowledged (2xx / ack frame) per room
        self.http_errors = 0
        self.behind = 0  # rate mode: sends that started over 5 ms late
        self.stalled = 0  # websocket publishers that stopped: no ack within `drain` seconds
        self.session: Any = None
        self.idle_http: list[RawHttp] = []  # keep-alive connections of the REST publishers
        self.sink = WebhookSink(spec.webhook_delay_ms / 1000) if spec.webhook_port else None
        self.published_at = 0.0  # when the last publish was acknowledged
        every = max(1, (len(spec.rooms) * spec.per_room) // max(1, spec.sample_sockets))
        self.sample_every = every

    # --- connecting ---------------------------------------------------------------------------

    async def open_session(self) -> None:
        """The aiohttp session serves the aiohttp websocket client only."""
        if self.spec.client == "aiohttp":
            import aiohttp

            # limit=0: a websocket holds its connector slot, and the default allows only 100.
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def close(self) -> None:
        if self.sink is not None:
            await self.sink.close()
        for client in self.idle_http:
            client.close()
        if self.session is not None:
            await self.session.close()

    def _connector(self) -> Callable[..., Any]:
        if self.spec.client == "aiohttp":
            return lambda *a: connect_aiohttp(*a, session=self.session,
                                              compress=self.spec.compress)
        return {"picows": connect_picows, "websockets": connect_websockets}[self.spec.client]

    def _local_addr(self, i: int) -> tuple[str, int] | None:
        ips = self.spec.source_ips
        return (ips[i % len(ips)], 0) if ips else None

    async def _open_one(self, i: int, room: int, gate: asyncio.Semaphore,
                        sample: bool) -> Receiver:
        spec = self.spec
        receiver = Receiver(self.tally, spec.protocol, sample)
        url = socket_url(spec.targets[i % len(spec.targets)], spec.protocol, spec.rooms[room])
        async with gate:
            try:
                self.handles.append(await asyncio.wait_for(self._connector()(
                    url, receiver, auth_headers(spec.token), self._local_addr(i)),
                    CONNECT_TIMEOUT))
            except Exception as exc:  # noqa: BLE001 - counted and reported, never fatal
                self.tally.failed += 1
                if self.tally.failed <= 3:
                    print(f"loadgen: connect failed: {exc!r}", file=sys.stderr)
        return receiver

    async def connect(self, count: int) -> None:
        """Open sockets until `count` exist (room by room), and wait until each is ready."""
        start = len(self.sockets)
        gate = asyncio.Semaphore(self.spec.connect_concurrency)
        self.tally.ready_target = count - self.tally.failed
        self.tally.ready_event.clear()
        jobs = []
        for i in range(start, count):
            room = (i // self.spec.per_room) % len(self.spec.rooms)
            self.rooms_of.append(room)
            jobs.append(self._open_one(i, room, gate, i % self.sample_every == 0))
        self.sockets.extend(await asyncio.gather(*jobs))
        self.tally.ready_target = count - self.tally.failed
        if self.tally.ready >= self.tally.ready_target:
            return
        try:
            await asyncio.wait_for(self.tally.ready_event.wait(), self.spec.connect_timeout)
        except TimeoutError:
            print(f"loadgen: only {self.tally.ready} of {count} sockets ready", file=sys.stderr)

    # --- publishing ---------------------------------------------------------------------------

    def _content(self) -> str:
        return f"~t{time.monotonic_ns()}~ bench" + "x" * self.spec.content_bytes

    def _base_http(self) -> str:
        url = self.spec.targets[self.spec.publish_target]
        return "http" + url[2:] if url.startswith("ws") else url

    async def _post(self, room: int) -> None:
        self.published[room] += 1
        path = f"/conversations/{self.spec.rooms[room]}/messages"
        body = orjson.dumps({"content": self._content()})
        client = self.idle_http.pop() if self.idle_http else RawHttp(
            self._base_http(), auth_headers(self.spec.token))
        try:
            status = await client.post(path, body)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            client.close()
            self._http_error(repr(exc))
            return
        self.idle_http.append(client)
        if status < 300:
            self.persisted[room] += 1
        else:
            self._http_error(status)

    def _http_error(self, what: object) -> None:
        self.http_errors += 1
        if self.http_errors <= 3:
            print(f"loadgen: publish failed: {what}", file=sys.stderr)

    def _probes(self) -> list[Receiver | None]:
        """The last socket of each room: the publisher keeps `window` messages ahead of it."""
        probes: list[Receiver | None] = [None] * len(self.spec.rooms)
        for socket, room in zip(self.sockets, self.rooms_of, strict=True):
            probes[room] = socket
        for probe in probes:
            if probe is not None:
                probe.waiter = asyncio.Event()
        return probes

    async def _wait_window(self, room: int, probe: Receiver | None) -> None:
        if probe is None or probe.waiter is None:
            return
        while self.published[room] - probe.received >= self.spec.window:
            probe.waiter.clear()
            await asyncio.wait_for(probe.waiter.wait(), self.spec.drain)

    async def _rest_loop(self, rooms: list[int], deadline: float, budget: itertools.count,
                         probes: list[Receiver | None]) -> None:
        for room in itertools.cycle(rooms):
            if time.monotonic() >= deadline or next(budget) >= self.spec.max_messages:
                return
            await self._wait_window(room, probes[room])
            await self._post(room)

    async def publish_max_rest(self, deadline: float) -> None:
        """`publishers` loops, one request in flight each: rooms split among them, or (fewer
        rooms than loops) several loops per room, all held to the room's window."""
        probes = self._probes()
        budget = itertools.count()
        n, rooms = max(1, self.spec.publishers), len(self.spec.rooms)
        shares = [list(range(p, rooms, n)) if rooms >= n else [p % rooms] for p in range(n)]
        await asyncio.gather(*(self._rest_loop(share, deadline, budget, probes)
                               for share in shares))

    async def publish_rate_rest(self, deadline: float) -> None:
        rate = float(self.spec.rate or 1.0)
        gate = asyncio.Semaphore(1024)
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()

        async def send(room: int) -> None:
            async with gate:
                await self._post(room)

        for k in range(self.spec.max_messages):
            at = start + k / rate
            if at >= deadline:
                break
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                self.behind += 1
            task = asyncio.ensure_future(send(k % len(self.spec.rooms)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=self.spec.drain)

    async def publish_ws(self, deadline: float) -> None:
        """Publishers are extra sockets, one per room in turn, pipelining `window` sends."""
        spec = self.spec
        gate = asyncio.Semaphore(spec.connect_concurrency)
        count = spec.publishers
        pubs = []
        for p in range(count):
            room = p % len(spec.rooms)
            pub = await self._open_publisher(p, room, gate)
            pubs.append((pub, room))
        budget = itertools.count()
        await asyncio.gather(*(self._ws_loop(pub, room, p, deadline, budget)
                               for p, (pub, room) in enumerate(pubs)))

    async def publish_members(self, deadline: float) -> None:
        """Every socket of every room posts over its own websocket, `window` sends in flight
        each: a room of a person and an agent, both talking."""
        budget = itertools.count()
        for sock in self.sockets:
            sock.waiter = asyncio.Event()
        await asyncio.gather(*(self._ws_loop(sock, room, p, deadline, budget)
                               for p, (sock, room) in enumerate(
                                   zip(self.sockets, self.rooms_of, strict=True))
                               if sock.is_ready))

    async def _open_publisher(self, p: int, room: int, gate: asyncio.Semaphore) -> Receiver:
        receiver = await self._open_one(self.spec.publish_target, room, gate, False)
        self.sockets.append(receiver)
        self.rooms_of.append(room)
        receiver.waiter = asyncio.Event()
        end = time.monotonic() + self.spec.connect_timeout
        while not receiver.is_ready and time.monotonic() < end:
            await asyncio.sleep(POLL)
        return receiver

    async def _ws_loop(self, pub: Receiver, room: int, p: int, deadline: float,
                       budget: itertools.count) -> None:
        for k in itertools.count():
            if time.monotonic() >= deadline or next(budget) >= self.spec.max_messages:
                break
            if not await self._acked_within_window(pub, k):
                self.stalled += 1  # no ack within the drain time: this socket stops sending
                break
            self.published[room] += 1
            pub.send_text(self._ws_frame(f"{p}-{k}", k))
        end = time.monotonic() + self.spec.drain
        while pub.acked < k and time.monotonic() < end:
            await asyncio.sleep(POLL)
        self.persisted[room] += pub.acked

    async def _acked_within_window(self, pub: Receiver, k: int) -> bool:
        assert pub.waiter is not None
        try:
            while k - pub.acked >= self.spec.window:
                pub.waiter.clear()
                await asyncio.wait_for(pub.waiter.wait(), self.spec.drain)
        except TimeoutError:
            return False
        return True

    def _ws_frame(self, client_id: str, k: int) -> bytes:
        body = {"type": "message", "content": self._content(), "client_id": client_id}
        if self.spec.protocol == "socketio":
            return b"42" + str(k + 1).encode() + orjson.dumps(["message", body])
        return orjson.dumps(body)

    # --- draining and results -----------------------------------------------------------------

    async def drain(self) -> float:
        """Wait until every socket has every message of its room; return when that happened."""
        end = time.monotonic() + self.spec.drain
        while time.monotonic() < end:
            if self.missing() == 0:
                break
            await asyncio.sleep(POLL)
        return time.monotonic()

    async def warm_up(self) -> None:
        """`WARM_UP` messages into every room, delivered everywhere, then out of every count.
        Rooms without sockets get one (their webhooks must be delivered before measuring)."""
        for _ in range(WARM_UP if self.spec.per_room else 1):
            await asyncio.gather(*(self._post(room) for room in range(len(self.spec.rooms))))
        await self.drain()
        for sock in self.sockets:
            sock.received = 0
        self.published = [0] * len(self.spec.rooms)
        self.persisted = [0] * len(self.spec.rooms)
        self.http_errors = 0
        del self.tally.latencies[:]  # in place: the sampled sockets hold this array
        if self.sink is not None:
            self.sink.received = 0
            del self.sink.latencies[:]

    def missing(self) -> int:
        persisted = self.persisted
        lost = sum(max(0, persisted[room] - s.received)
                   for s, room in zip(self.sockets, self.rooms_of, strict=True))
        if self.sink is not None:
            lost += max(0, self.spec.webhooks_per_message * sum(persisted) - self.sink.received)
        return lost

    def _per_second(self, count: int, seconds: float) -> float:
        return round(count / seconds, 1) if seconds > 0 else 0.0

    def _webhooks(self, elapsed: float) -> dict[str, Any]:
        if self.sink is None:
            return {}
        lat = percentiles(self.sink.latencies)
        return {"webhooks": self.sink.received,
                "webhooks_per_s": self._per_second(self.sink.received, elapsed),
                "webhook_p50_ms": lat["p50_ms"], "webhook_p99_ms": lat["p99_ms"]}

    def result(self, elapsed: float, cpu: float) -> dict[str, Any]:
        deliveries = sum(s.received for s in self.sockets)
        expected = sum(self.persisted[room] for room in self.rooms_of)
        doubled = sum(1 for s, room in zip(self.sockets, self.rooms_of, strict=True)
                      if s.received > self.persisted[room])
        lat = percentiles(self.tally.latencies)
        return {
            "sockets": len(self.sockets), "ready": self.tally.ready,
            "failed": self.tally.failed, "closed": self.tally.closed,
            "published": sum(self.published), "persisted": sum(self.persisted),
            "deliveries": deliveries, "expected": expected, "lost": self.missing(),
            "over_delivered_sockets": doubled, "seconds": round(elapsed, 3),
            "deliveries_per_s": round(deliveries / elapsed, 1) if elapsed else 0.0,
            "messages_per_s": self._per_second(sum(self.persisted), self.published_at),
            **lat, "gen_cpu": round(cpu, 3), "gen_saturated": cpu >= SATURATED,
            "behind_schedule": self.behind, "stalled_publishers": self.stalled,
            "http_errors": self.http_errors,
            "error_frames": self.tally.errors, **self._webhooks(elapsed),
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_idle(gen: Generator, commands: Commands) -> None:
    for count in gen.spec.steps:
        await gen.connect(count)
        emit("step", sockets=count, ready=gen.tally.ready, failed=gen.tally.failed)
        await commands.wait("next")
    if gen.spec.touch:
        await asyncio.gather(*(gen._post(room) for room in range(len(gen.spec.rooms))))
        await gen.drain()
        emit("touched", lost=gen.missing(), ready=gen.tally.ready, closed=gen.tally.closed)
        await commands.wait("next")
    emit("result", **gen.result(0.0, 0.0))


async def run_publish(gen: Generator, commands: Commands) -> None:
    spec = gen.spec
    await gen.connect(len(spec.rooms) * spec.per_room)
    await gen.warm_up()
    emit("connected", sockets=len(gen.sockets), ready=gen.tally.ready, failed=gen.tally.failed)
    await commands.wait("go")
    start, cpu0 = time.monotonic(), _cpu_seconds()
    deadline = start + spec.duration
    if spec.via == "ws":
        await gen.publish_ws(deadline)
    elif spec.via == "members":
        await gen.publish_members(deadline)
    elif spec.rate:
        await gen.publish_rate_rest(deadline)
    else:
        await gen.publish_max_rest(deadline)
    gen.published_at = time.monotonic() - start
    end = await gen.drain()
    cpu = (_cpu_seconds() - cpu0) / (end - start)
    emit("measured")
    emit("result", **gen.result(end - start, cpu))


async def amain(spec: Spec) -> None:
    commands = Commands()
    await commands.start()
    gen = Generator(spec)
    await gen.open_session()
    if gen.sink is not None:
        await gen.sink.start(spec.webhook_port)
    try:
        if spec.steps:
            await run_idle(gen, commands)
        else:
            await run_publish(gen, commands)
    finally:
        await gen.close()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    spec = Spec(**orjson.loads(argv[0]))
    _check_loopback(spec)
    raise_nofile_limit()
    loop_name = install_uvloop(spec.uvloop)
    print(f"loadgen: {spec.client} on {loop_name}", file=sys.stderr)
    asyncio.run(amain(spec))


if __name__ == "__main__":
    main()
