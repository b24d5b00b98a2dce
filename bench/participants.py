"""Participants at scale: the conversation list with unread counts, and the cost of read frames.

Run from the repository root: `python -m bench.participants [--reads-only]` (a throwaway embedded
Postgres, or CHATSERVER_TEST_DATABASE_URL). It prints markdown for BENCHMARKS.md.

1. The list (`GET /conversations?participant=`) at 10,000 conversations x 100 messages: the SQL
   the server runs, for a participant in 100 conversations and one in all 10,000, beside the plain
   conversation page (baseline) and beside a naive unread count that counts each conversation's
   messages after the horizon (the peer this design avoids), all in one run.
2. Read horizons through a running server: the latency of `POST .../read` beside posting a
   message (baseline), and how many `read` frames 200 watching sockets get while one participant
   marks 200 horizons back to back (coalesced to at most one per second per socket).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp.test_utils import TestServer

from chatserver.app import create_app
from chatserver.auth.keys import create_api_key
from chatserver.config import Settings
from chatserver.db.dsn import with_database
from chatserver.db.pool import init_connection
from chatserver.store.conversations import SELECT_CONVERSATIONS_PAGE
from chatserver.store.participants import SELECT_CONVERSATIONS_OF
from tests import databases

CONVERSATIONS = 10_000
MESSAGES = 100
WATCHERS = 200
MARKS = 200

SEED = f"""
INSERT INTO conversations (id, channel, usecase, last_seq, created_at)
SELECT md5('c' || c)::uuid, 'API', 'DEFAULT', {MESSAGES}, now() - c * interval '1 minute'
FROM generate_series(1, {CONVERSATIONS}) c;
INSERT INTO messages (id, conversation_id, seq, content, content_type, type, channel, status,
                      created_by, author_id, author_kind, author_name, created_at)
SELECT gen_random_uuid(), md5('c' || c)::uuid, s, 'message ' || s, 'TEXT', 'USER_INPUT', 'API',
       'RECEIVED', 'u' || c, 'u' || c, 'user', 'u' || c,
       now() - c * interval '1 minute' + s * interval '1 second'
FROM generate_series(1, {CONVERSATIONS}) c, generate_series(1, {MESSAGES}) s;
INSERT INTO participants (conversation_id, id, kind, name, role, last_read_seq)
SELECT md5('c' || c)::uuid, p.id, 'user', p.id, 'member', (c * 7) % {MESSAGES}
FROM generate_series(1, {CONVERSATIONS}) c,
     LATERAL (SELECT 'alice' AS id UNION ALL SELECT 'bob' WHERE c % 100 = 0
              UNION ALL SELECT 'u' || c) p;
ANALYZE conversations; ANALYZE messages; ANALYZE participants;
"""
# The peer: unread by counting each conversation's messages after the horizon.
NAIVE_UNREAD = """
SELECT c.id, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id
              AND m.seq > p.last_read_seq AND m.author_id IS DISTINCT FROM p.id) AS unread_count
FROM participants p JOIN conversations c ON c.id = p.conversation_id
WHERE p.id = $1 AND p.left_at IS NULL
"""


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered) * 1000:.2f} | {p99 * 1000:.2f}"


async def timed(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    await call()  # warm the cache and the plan
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def list_query(db: asyncpg.Connection) -> list[str]:
    cases = [
        ("plain page (`GET /conversations`, baseline)",
         lambda: db.fetch(SELECT_CONVERSATIONS_PAGE, None, None, None, 51), 50),
        ("bob, in 100 conversations: list with unread and last message",
         lambda: db.fetch(SELECT_CONVERSATIONS_OF, "bob", None, None, None, 51), 50),
        ("bob: naive count of unread messages (peer)",
         lambda: db.fetch(NAIVE_UNREAD, "bob"), 50),
        ("alice, in all 10,000: list with unread and last message",
         lambda: db.fetch(SELECT_CONVERSATIONS_OF, "alice", None, None, None, 51), 20),
        ("alice: naive count of unread messages (peer)",
         lambda: db.fetch(NAIVE_UNREAD, "alice"), 5),
    ]
    lines = ["| query | median ms | p99 ms |", "|---|---|---|"]
    for title, call, runs in cases:
        lines.append(f"| {title} | {ms(await timed(call, runs))} |")
    plan = await db.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {SELECT_CONVERSATIONS_OF}",
                          "alice", None, None, None, 51)
    lines += ["", "EXPLAIN (ANALYZE, BUFFERS) of alice's first page:", "", "```",
              *(r[0] for r in plan), "```"]
    return lines


async def read_frames(settings: Settings, key: str) -> list[str]:
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        # No connection limit: each socket holds one (aiohttp's default limit is 100).
        async with aiohttp.ClientSession(base_url=str(server.make_url("")),
                                         connector=aiohttp.TCPConnector(limit=0)) as http:
            async def call(method: str, path: str, body: Any = None) -> Any:
                async with http.request(method, path, json=body, headers=headers) as resp:
                    assert resp.status < 300, (resp.status, await resp.text())
                    return await resp.json(content_type=None)

            cid = (await call("POST", "/conversations", {"channel": "API"}))["id"]
            token = (await call("POST", f"/conversations/{cid}/tokens",
                                {"participant": "alice"}))["token"]
            posts = await timed(lambda: call("POST", f"/conversations/{cid}/messages",
                                             {"content": "x"}), MARKS)
            seq = iter(range(1, 10**6))
            marks = await timed(lambda: call("POST", f"/conversations/{cid}/participants/alice/"
                                             "read", {"seq": next(seq)}), MARKS)
            for _ in range(MARKS):  # seqs for the socket's marks, above the ones marked so far
                await call("POST", f"/conversations/{cid}/messages", {"content": "y"})
            first = next(seq)
            sockets = [await http.ws_connect(f"/ws/conversations/{cid}", headers=headers)
                       for _ in range(WATCHERS)]
            alice = await http.ws_connect(f"/ws/conversations/{cid}?token={token}")
            started = time.perf_counter()
            for n in range(first, first + MARKS):
                await alice.send_str(orjson.dumps({"type": "read", "seq": n}).decode())
            counts = await asyncio.gather(*(reads_until(ws, first + MARKS - 1)
                                            for ws in sockets))
            elapsed = time.perf_counter() - started
            for ws in (*sockets, alice):
                await ws.close()
    finally:
        await server.close()
    return [
        "| request (one at a time, same server) | median ms | p99 ms |", "|---|---|---|",
        f"| `POST .../messages` (baseline) | {ms(posts)} |",
        f"| `POST .../participants/alice/read` | {ms(marks)} |",
        "",
        f"{MARKS} `read` frames sent back to back on one socket: each of {WATCHERS} watching "
        f"sockets got {min(counts)} to {max(counts)} `read` frames, the last horizon "
        f"{elapsed:.2f} s after the first was sent.",
    ]


async def reads_until(ws: aiohttp.ClientWebSocketResponse, seq: int) -> int:
    frames = 0
    while True:
        msg = await asyncio.wait_for(ws.receive(), 30)
        frame = orjson.loads(msg.data)
        if frame["type"] == "read":
            frames += 1
            if frame["seq"] >= seq:
                return frames


async def list_queries(dsn: str) -> None:
    db = await asyncpg.connect(dsn)
    try:
        await init_connection(db)
        started = time.perf_counter()
        await db.execute(SEED)
        seeded = time.perf_counter() - started
        version = await db.fetchval("SHOW server_version")
        print(f"Postgres {version}; {CONVERSATIONS:,} conversations x {MESSAGES} messages "
              f"seeded in {seeded:.0f} s.\n")
        print("\n".join(await list_query(db)))
    finally:
        await db.close()


async def main() -> None:
    handle, admin_dsn = databases.start_test_postgres()
    template = await databases.create_template(admin_dsn)
    names = [await databases.create_test_database(admin_dsn, template) for _ in range(2)]
    try:
        if "--reads-only" not in sys.argv:
            await list_queries(with_database(admin_dsn, names[0]))
        url = with_database(admin_dsn, names[1])
        settings = Settings().replace(database={"url": url},
                                      limits={"socket_frames_per_second": 0.0,
                                              "requests_per_second_per_key": 0.0})
        conn = await asyncpg.connect(url)
        key, _ = await create_api_key(conn, "bench", None)
        await conn.close()
        print()
        print("\n".join(await read_frames(settings, key)))
    finally:
        for name in (*names, template):
            await databases.drop_database(admin_dsn, name)
        if handle is not None:
            handle.cleanup()  # type: ignore[attr-defined]


if __name__ == "__main__":
    asyncio.run(main())
