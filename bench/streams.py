"""Streamed messages against the naive alternative, in one run:
`python -m bench.streams [--streams 200] [--rate 30] [--sockets 10] [--seconds 15]`.

One `chatserver serve` (pinned to --server-core) on an embedded Postgres and a Redis. Phase
"stream": one open stream per conversation, its agent socket sending `message.delta` frames of
~4 bytes at --rate per second (paced, not waiting for acks), --sockets readers per conversation.
Phase "messages": the same, on fresh conversations, each token posted as a message of its own
(`message` frames). This process (pinned to --gen-core) is both agents and readers: readers use
picows and parse each frame; append->delivery latency is measured on one reader per conversation
(a delta's send time is looked up by its index; a message's by its order, since one socket's sends
keep their order). Over the measured window: deliveries/s, latency p50/p99, Postgres commits/s
(pg_stat_database) and WAL bytes (pg_current_wal_lsn) per token, server CPU per token.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench import servers
from bench.clients import CONNECT_TIMEOUT
from bench.stats import percentiles, tree_cpu_seconds

TOKENS = ["the ", "cat ", "sat ", "on a", " mat", ". Th", "en i", "t sl", "ept."]
WARMUP = 2.0
DELTA = b'{"type":"message.delta"'
MESSAGE = b'{"type":"message","message"'


@dataclass
class Phase:
    name: str
    conversations: list[str]
    sent: dict[str, list[int]] = field(default_factory=dict)  # conversation -> send times (ns)
    delivered: int = 0
    acked: int = 0
    errors: int = 0
    latencies: list[int] = field(default_factory=list)
    measuring: bool = False


class Reader:
    """One reading socket (picows): counts the tokens it gets; the sampled one also measures."""

    def __init__(self, phase: Phase, cid: str, sampled: bool) -> None:
        self.phase, self.cid, self.sampled = phase, cid, sampled
        self.messages = 0  # message frames seen (the naive phase's order)
        self.ready = asyncio.get_running_loop().create_future()

    def on_text(self, data: bytes) -> None:
        if not self.sampled:  # most sockets: count without parsing
            self.count(data)
            return
        frame = orjson.loads(data)
        kind = frame["type"]
        if kind == "message.delta":
            first, count = frame["index"], frame["count"]
        elif kind == "message" and frame["message"].get("stream") is None:
            first, count = self.messages, 1
            self.messages += 1
        else:
            if kind == "ready" and not self.ready.done():
                self.ready.set_result(None)
            return
        phase = self.phase
        if not phase.measuring:
            return
        phase.delivered += count
        if self.sampled:
            now, sent = time.monotonic_ns(), phase.sent[self.cid]
            phase.latencies.extend(now - sent[i] for i in range(first, first + count)
                                   if i < len(sent))


    def count(self, data: bytes) -> None:
        if data.startswith(DELTA):
            i = data.find(b'"count":') + 8
            count = int(data[i:data.find(b",", i)])
        elif data.startswith(MESSAGE) and data.find(b'"stream":{') < 0:
            count = 1
        else:
            if data.startswith(b'{"type":"ready"') and not self.ready.done():
                self.ready.set_result(None)
            return
        if self.phase.measuring:
            self.phase.delivered += count


def listener_class() -> type:
    from picows import WSListener, WSMsgType

    class Listener(WSListener):  # type: ignore[misc]
        def __init__(self, reader: Reader) -> None:
            super().__init__()
            self.reader = reader

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                self.reader.on_text(frame.get_payload_as_bytes())

    return Listener


async def open_readers(side: servers.ServerSide, phase: Phase, per_conversation: int) -> list:
    from picows import ws_connect

    listener = listener_class()
    headers = {"Authorization": f"Bearer {side.token}"}
    transports, readers = [], []
    for cid in phase.conversations:
        for n in range(per_conversation):
            reader = Reader(phase, cid, sampled=n == 0)
            url = f"{side.targets[0]}/ws/conversations/{cid}"
            transport, _ = await ws_connect(lambda r=reader: listener(r), url,
                                            extra_headers=headers,
                                            websocket_handshake_timeout=CONNECT_TIMEOUT)
            transports.append(transport)
            readers.append(reader)
    await asyncio.gather(*(r.ready for r in readers))
    return transports


async def agent(session: aiohttp.ClientSession, side: servers.ServerSide, phase: Phase, cid: str,
                rate: float, stop_at: float) -> None:
    url = f"{side.targets[0].replace('ws://', 'http://')}/ws/conversations/{cid}"
    async with session.ws_connect(url, headers={"Authorization": f"Bearer {side.token}"}) as ws:
        while (frame := orjson.loads((await ws.receive()).data))["type"] != "ready":
            pass
        mid = None
        if phase.name == "stream":
            await ws.send_str(orjson.dumps({"type": "message", "content": "",
                                            "stream": True}).decode())
            while (frame := orjson.loads((await ws.receive()).data))["type"] != "ack":
                pass
            mid = frame["message"]["id"]
        reading = asyncio.create_task(count_acks(ws, phase))
        sent = phase.sent.setdefault(cid, [])
        start = time.monotonic()
        n = 0
        while (now := time.monotonic()) < stop_at:
            due = start + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            token = TOKENS[n % len(TOKENS)]
            if mid is not None:
                body = {"type": "message.delta", "message_id": mid, "index": n, "text": token}
            else:
                body = {"type": "message", "content": token}
            sent.append(time.monotonic_ns())
            await ws.send_str(orjson.dumps(body).decode())
            n += 1
        await asyncio.sleep(1.0)  # the last acks
        reading.cancel()


async def count_acks(ws: aiohttp.ClientWebSocketResponse, phase: Phase) -> None:
    async for msg in ws:
        frame = orjson.loads(msg.data)
        if frame["type"] == "ack" and phase.measuring:
            phase.acked += 1
        elif frame["type"] == "error":
            if not phase.errors:
                print("first error:", frame, flush=True)
            phase.errors += 1


async def database_counters(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        commits = await conn.fetchval(
            "SELECT sum(xact_commit)::bigint FROM pg_stat_database")
        wal = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        return int(commits), int(wal)
    finally:
        await conn.close()


async def run_phase(side: servers.ServerSide, dsn: str, phase: Phase, args: argparse.Namespace
                    ) -> dict[str, Any]:
    transports = await open_readers(side, phase, args.sockets)
    stop_at = time.monotonic() + WARMUP + args.seconds
    async with aiohttp.ClientSession() as session:
        agents = [asyncio.create_task(agent(session, side, phase, cid, args.rate, stop_at))
                  for cid in phase.conversations]
        await asyncio.sleep(WARMUP)
        await asyncio.sleep(0.5)  # stats of the warm-up reach pg_stat_database
        commits0, wal0 = await database_counters(dsn)
        cpu0 = {name: tree_cpu_seconds(pids) for name, pids in parts(side).items()}
        t0 = time.monotonic()
        phase.measuring = True
        sent0 = sum(len(s) for s in phase.sent.values())
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        phase.measuring = False
        wall = time.monotonic() - t0
        tokens = sum(len(s) for s in phase.sent.values()) - sent0
        cpu = {name: tree_cpu_seconds(pids) - cpu0[name] for name, pids in parts(side).items()}
        await asyncio.sleep(0.6)
        commits1, wal1 = await database_counters(dsn)
        await asyncio.gather(*agents)
    for transport in transports:
        transport.disconnect()
    pct = percentiles(phase.latencies)
    return {
        "phase": phase.name, "tokens_in_per_s": round(tokens / wall),
        "acked_per_s": round(phase.acked / wall), "errors": phase.errors,
        "deliveries_per_s": round(phase.delivered / wall),
        "latency_p50_ms": pct["p50_ms"], "latency_p99_ms": pct["p99_ms"],
        "pg_commits_per_s": round((commits1 - commits0) / wall),
        "wal_bytes_per_token": round((wal1 - wal0) / max(tokens, 1)),
        "server_cpu_pct": round(100 * cpu["server"] / wall, 1),
        "postgres_cpu_pct": round(100 * cpu["postgres"] / wall, 1),
        "redis_cpu_pct": round(100 * cpu["redis"] / wall, 1),
        "server_cpu_us_per_token": round(1e6 * cpu["server"] / max(tokens, 1), 1),
        "all_cpu_us_per_token": round(1e6 * sum(cpu.values()) / max(tokens, 1), 1),
    }


def parts(side: servers.ServerSide) -> dict[str, list[int]]:
    return {"server": side.rss_pids(), **{name: [pid] for name, pid in side.helpers.items()}}


async def amain(args: argparse.Namespace) -> None:
    shared = servers.Shared.create(args.server_core, uvloop=True)
    try:
        side = servers.start_ours(shared, env={
            "CHATSERVER_STREAMS_DELTAS_PER_SECOND": "0",
            "CHATSERVER_STREAMS_IDLE_TIMEOUT": "600",
        })
        assert side.dsn is not None
        dsn = side.dsn
        results = []
        for name in ("stream", "messages"):
            conversations = servers.create_conversations(side, args.streams)
            results.append(await run_phase(side, dsn, Phase(name, conversations), args))
            print(orjson.dumps(results[-1]).decode(), flush=True)
        print_table(results, args)
        side.close()
    finally:
        shared.close()


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n{args.streams} conversations x {args.rate:g} tokens/s x {args.sockets} sockets, "
          f"{args.seconds:g} s measured\n")
    keys = [k for k in results[0] if k != "phase"]
    print("| figure | " + " | ".join(r["phase"] for r in results) + " | messages / stream |")
    print("|---|" + "---|" * (len(results) + 1))
    for key in keys:
        values = [r[key] for r in results]
        ratio = ""
        if all(isinstance(v, int | float) and v for v in values):
            ratio = f"{values[1] / values[0]:.1f}x"
        print(f"| {key} | " + " | ".join(str(v) for v in values) + f" | {ratio} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__)
    parser.add_argument("--streams", type=int, default=200, help="conversations (one stream each)")
    parser.add_argument("--rate", type=float, default=30.0, help="tokens per second per stream")
    parser.add_argument("--sockets", type=int, default=10, help="reading sockets per conversation")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per phase")
    parser.add_argument("--server-core", default="0", help="CPU the server side is pinned to")
    parser.add_argument("--gen-core", default="1", help="CPU this generator is pinned to")
    args = parser.parse_args(argv)
    if args.gen_core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.gen_core.split(",")})
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
