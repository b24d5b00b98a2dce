"""Flat as data grows: `python -m bench.growth [--sizes 10000,1000000,10000000]`.

One embedded Postgres, one database per size, each seeded with COPY (bench/seed.py: 100,000
conversations, half of the messages in one big conversation) and served by its own
`chatserver serve` (in-process bus, limits off; pinned to --server-core with Postgres, the
client to --client-core). The figures are then taken in rounds that visit every size in turn, so
whatever else the machine does at a moment lands on all sizes alike. One request at a time, over
keep-alive HTTP (websocket for the replay):

- post: `POST /conversations/{id}/messages` to a random conversation (one in ten to the big one);
- first page: the big conversation's newest 50 messages;
- deep page: its 50 messages below `before` = 1,000,000 messages back (or as far back as a
  smaller conversation goes, less one page);
- since replay: a websocket opened with `since` 1,000 messages back, until its `ready` frame;
- conversations, first page / 50,000 back: `GET /conversations` (newest first, 50 a page).

Prints a markdown table: p50 and p99 in ms per size, and the largest size's over the smallest's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import orjson

from bench import servers
from bench.seed import Seeded, seed
from bench.stats import percentiles
from chatserver.db.bootstrap import run_migrations
from chatserver.db.dsn import with_database
from chatserver.services.conversations import encode_cursor

SIZES = (10_000, 1_000_000, 10_000_000)
CONVERSATIONS = 100_000
DEPTH = 1_000_000
REPLAY = 1_000
LIST_DEPTH = 50_000
PAGE = 50
BIG_EVERY = 10  # one post in ten goes to the big conversation
SELECT_SAMPLE = "SELECT id FROM conversations TABLESAMPLE SYSTEM (5) LIMIT 1000"
SELECT_LIST_CURSOR = """
SELECT created_at, id FROM conversations ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1
"""
FIGURES = ("post", "first page", "deep page", "since replay", "conversations, first page",
           f"conversations, {LIST_DEPTH:,} back")
# Samples of each figure per round, per size.
PER_ROUND = {"post": 100, "first page": 50, "deep page": 50, "since replay": 10,
             "conversations, first page": 50, f"conversations, {LIST_DEPTH:,} back": 50}


@dataclass
class Target:
    """One size: its database, its server, what the requests aim at, what they measured."""

    size: int
    url: str
    seeded: Seeded
    sample: list[uuid.UUID]
    list_cursor: str
    side: servers.ServerSide | None = None
    latencies: dict[str, list[int]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        assert self.side is not None
        return f"http://{servers.HOST}:{self.side.ports[0]}"


async def prepare(admin_dsn: str, size: int, partitions: int) -> Target:
    name = f"growth_{size}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = with_database(admin_dsn, name)
    await run_migrations(url, partitions=partitions)
    conn = await asyncpg.connect(url)
    try:
        started = time.monotonic()
        seeded = await seed(conn, size, CONVERSATIONS)
        print(f"seeded {size:,} messages in {time.monotonic() - started:.0f} s", flush=True)
        sample = [r["id"] for r in await conn.fetch(SELECT_SAMPLE)]
        cursor = encode_cursor(await conn.fetchrow(SELECT_LIST_CURSOR, LIST_DEPTH))
    finally:
        await conn.close()
    return Target(size, url, seeded, sample, cursor)


class Client:
    """The requests of one figure each, timed one at a time."""

    def __init__(self, http: aiohttp.ClientSession, target: Target) -> None:
        self.http = http
        self.t = target
        self.posts = 0
        self.big_seq = target.seeded.big_messages  # grows with our posts to the big one

    async def _get(self, path: str, **params: str) -> None:
        async with self.http.get(self.t.base + path, params=params) as resp:
            assert resp.status == 200, (resp.status, await resp.text())
            await resp.read()

    async def post(self) -> None:
        self.posts += 1
        big = self.posts % BIG_EVERY == 0
        cid = self.t.seeded.big_conversation if big else random.choice(self.t.sample)
        body = orjson.dumps({"content": f"post {self.posts}"})
        async with self.http.post(f"{self.t.base}/conversations/{cid}/messages", data=body,
                                  headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 201, (resp.status, await resp.text())
            await resp.read()
        self.big_seq += big

    async def first_page(self) -> None:
        await self._get(f"/conversations/{self.t.seeded.big_conversation}/messages")

    async def deep_page(self) -> None:
        depth = min(DEPTH, self.t.seeded.big_messages - PAGE)
        await self._get(f"/conversations/{self.t.seeded.big_conversation}/messages",
                        before=str(self.big_seq - depth))

    async def since_replay(self) -> None:
        cid = self.t.seeded.big_conversation
        url = f"{self.t.base}/ws/conversations/{cid}?since={self.big_seq - REPLAY}"
        replayed = 0
        async with self.http.ws_connect(url) as ws:
            async for msg in ws:
                kind = orjson.loads(msg.data)["type"]
                if kind == "ready":
                    break
                replayed += kind == "message"
        assert replayed == REPLAY, replayed

    async def conversations_first(self) -> None:
        await self._get("/conversations")

    async def conversations_deep(self) -> None:
        await self._get("/conversations", before=self.t.list_cursor)

    def calls(self) -> dict[str, Callable[[], Awaitable[None]]]:
        return dict(zip(FIGURES, (self.post, self.first_page, self.deep_page, self.since_replay,
                                  self.conversations_first, self.conversations_deep), strict=True))


async def measure(targets: list[Target], rounds: int) -> None:
    sessions = [aiohttp.ClientSession(headers={"Authorization": f"Bearer {t.side.token}"})
                for t in targets if t.side]
    clients = [Client(s, t) for s, t in zip(sessions, targets, strict=True)]
    try:
        for client in clients:  # warm-up: connections, prepared statements, caches
            for call in client.calls().values():
                for _ in range(3):
                    await call()
        for _ in range(rounds):
            for client in clients:
                for figure, call in client.calls().items():
                    samples = client.t.latencies.setdefault(figure, [])
                    for _ in range(PER_ROUND[figure]):
                        started = time.perf_counter_ns()
                        await call()
                        samples.append(time.perf_counter_ns() - started)
    finally:
        for session in sessions:
            await session.close()


def _ratio(large: float | None, small: float | None) -> str:
    return f"{large / small:.2f}" if large is not None and small else "-"


def table(targets: list[Target]) -> str:
    sizes = " | ".join(f"{t.size:,} p50 / p99" for t in targets)
    lines = [f"| figure (ms) | {sizes} | largest ÷ smallest p50 / p99 |",
             "|---" * (len(targets) + 2) + "|"]
    for figure in FIGURES:
        stats = [percentiles(t.latencies[figure]) for t in targets]
        cells = " | ".join(f"{s['p50_ms']} / {s['p99_ms']}" for s in stats)
        ratios = " / ".join(_ratio(stats[-1][q], stats[0][q]) for q in ("p50_ms", "p99_ms"))
        lines.append(f"| {figure} | {cells} | {ratios} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace, shared: servers.Shared) -> list[Target]:
    admin_dsn = shared.need_postgres().dsn
    targets = [await prepare(admin_dsn, size, args.partitions) for size in args.sizes]
    # The seeding's dirty pages go to disk now, not while the first rounds are measured.
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    env = {"CHATSERVER_DATABASE_PARTITIONS": str(args.partitions), **dict(args.server_env)}
    for target in targets:
        target.side = servers.start_ours(shared, env=env, redis=False, dsn=target.url)
    try:
        await measure(targets, args.rounds)
    finally:
        for target in targets:
            if target.side:
                target.side.close()
    return targets


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=list(SIZES), help="messages in the table, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=0,
                        help="[database] partitions of every database (0: a plain table)")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        type=lambda s: tuple(s.split("=", 1)),
                        help="a setting of our servers, e.g. "
                        "CHATSERVER_DATABASE_PLAN_CACHE_MODE=auto")
    parser.add_argument("--ours-src", help="run our servers from this checkout (a baseline)")
    parser.add_argument("--server-core", default="0")
    parser.add_argument("--client-core", default="1")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    shared = servers.Shared.create(args.server_core, uvloop=True, ours_src=args.ours_src)
    if args.client_core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.client_core.split(",")})
    try:
        targets = asyncio.run(run(args, shared))
        layout = "plain table" if not args.partitions else f"{args.partitions} partitions"
        print(f"\n{CONVERSATIONS:,} conversations, messages in a {layout}, {args.rounds} rounds, "
              f"server from {args.ours_src or 'this checkout'}, {dict(args.server_env)}\n")
        print(table(targets))
    finally:
        shared.close()


if __name__ == "__main__":
    main()
