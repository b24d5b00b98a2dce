"""One scenario's world: its database, a Redis, N server instances, a webhook receiver, and the
check that compares what clients saw with what Postgres holds.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from chaos.clients import Outcome, Receiver, Subscriber, auth
from chaos.processes import Instance, Postgres, RedisServer, create_key
from chatserver.db.bootstrap import run_migrations
from chatserver.db.dsn import with_database

# Fast retries and polls, loopback webhooks allowed, no per-key rate limit (the publishers are
# one key), a short Retry-After and shutdown budget: the scenarios run in seconds, not minutes.
INSTANCE_ENV = {
    "CHATSERVER_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
    "CHATSERVER_WEBHOOKS_SCHEDULE": "0.2,0.5,1,2,2,2,2,2,2,2,2,2",
    "CHATSERVER_WEBHOOKS_JITTER": "0",
    "CHATSERVER_WEBHOOKS_BACKOFF_FLOOR": "0.2",
    "CHATSERVER_WEBHOOKS_POLL_INTERVAL": "0.2",
    "CHATSERVER_WEBHOOKS_TIMEOUT": "2",
    "CHATSERVER_REALTIME_RECONCILE_INTERVAL": "0.5",
    "CHATSERVER_REALTIME_GAP_WAIT": "0.1",
    "CHATSERVER_REALTIME_BUS_BACKOFF_MAX": "0.5",
    "CHATSERVER_LIMITS_REQUESTS_PER_SECOND_PER_KEY": "0",
    "CHATSERVER_OUTAGES_RETRY_AFTER": "1",
    "CHATSERVER_SERVER_SHUTDOWN_TIMEOUT": "4",
    "CHATSERVER_SERVER_LOG_LEVEL": "INFO",
}
# A claim left by a killed instance is sent again after [webhooks] timeout + the lease margin.
WEBHOOK_WAIT = 2 + 30 + 20
SOCKET_WAIT = 30.0


@dataclass
class Report:
    """One scenario's summary line, and whatever it found wrong."""

    name: str
    sent: int = 0
    acknowledged: int = 0
    delivered: int = 0
    lost: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, failure: str) -> None:
        if not ok:
            self.failures.append(failure)

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.notes.items())
        verdict = "ok" if not self.failures else "FAILED: " + "; ".join(self.failures)
        return (f"{self.name}: sent={self.sent} acknowledged={self.acknowledged} "
                f"delivered={self.delivered} lost={self.lost} {extra} -> {verdict}")


class Stack:
    def __init__(self, postgres: Postgres, workdir: Path, name: str, instances: int = 2,
                 **env: str) -> None:
        self.postgres = postgres
        self.workdir = workdir
        self.name = name
        self.size = instances
        self.env = env
        self.database_url = ""
        self.key = ""
        self.redis = RedisServer()
        self.receiver = Receiver()
        self.instances: list[Instance] = []
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Stack:
        database = f"chaos_{self.name}_{uuid.uuid4().hex[:6]}"
        conn = await asyncpg.connect(self.postgres.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()
        self.database_url = with_database(self.postgres.admin_url, database)
        await run_migrations(self.database_url, partitions=0)
        self.key = await create_key(self.database_url)
        self.redis.start()
        await self.receiver.start()
        env = {**INSTANCE_ENV, "CHATSERVER_DATABASE_URL": self.database_url,
               "CHATSERVER_REDIS_URL": self.redis.url, **self.env}
        for n in range(self.size):
            self.instances.append(
                await Instance(f"{self.name}-{n}", env, self.workdir).start())
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.close()
        for instance in self.instances:
            await instance.close()
        await self.receiver.close()
        self.redis.kill()

    def urls(self) -> list[str]:
        """Every instance, dead or alive: clients find out by trying, and move to the next one."""
        return [i.url for i in self.instances]

    async def conversation(self, callback_path: str = "/hook") -> str:
        assert self.http is not None
        callback_url = self.receiver.base_url + callback_path
        body = {"channel": "API", "config": {"callback_url": callback_url}}
        async with self.http.post(self.instances[0].url + "/conversations", json=body,
                                  headers=auth(self.key)) as resp:
            assert resp.status == 201, await resp.text()
            return str((await resp.json())["id"])

    async def subscribers(self, cid: str, per_instance: int) -> list[Subscriber]:
        assert self.http is not None
        return [await Subscriber(self.urls, n, cid, self.key).start(self.http)
                for n in range(len(self.instances) * per_instance)]

    async def readyz(self, instance: Instance) -> dict[str, Any]:
        assert self.http is not None
        async with self.http.get(instance.url + "/readyz") as resp:
            return dict(await resp.json())

    def logs(self) -> str:
        return "\n".join(f"--- {i.name} (exit {i.process.returncode if i.process else None})\n"
                         f"{i.log_tail()}" for i in self.instances)


async def verify(stack: Stack, report: Report, cid: str, outcomes: list[Outcome],
                 subscribers: list[Subscriber]) -> None:
    """Postgres holds every acknowledged message, whole; every subscriber got every committed
    message exactly once in seq order; the receiver got each at least once, in order."""
    acked = {cid_: seq for o in outcomes for cid_, seq in o.acked.items()}
    report.sent = sum(len(o.sent) for o in outcomes)
    report.acknowledged = len(acked)
    last_seq = await _check_database(stack, report, cid, acked)
    seen_by_all = await _check_sockets(report, subscribers, last_seq)
    hooked = await _check_webhooks(stack, report, cid, last_seq)
    report.delivered = sum(1 for seq in acked.values() if seq in seen_by_all and seq in hooked)
    report.lost = report.acknowledged - report.delivered
    report.notes.update(committed=last_seq, resumes=sum(s.resumes for s in subscribers))
    report.check(report.lost == 0, f"{report.lost} acknowledged message(s) not delivered")


async def _check_database(stack: Stack, report: Report, cid: str, acked: dict[str, int]) -> int:
    conn = await asyncpg.connect(stack.database_url)
    try:
        conversation_id = uuid.UUID(hex=cid)
        rows = await conn.fetch("SELECT seq, client_id FROM messages WHERE conversation_id = $1 "
                                "ORDER BY seq", conversation_id)
        last_seq = await conn.fetchval("SELECT last_seq FROM conversations WHERE id = $1",
                                       conversation_id)
        queued = await conn.fetch(
            "SELECT (payload->'data'->'message'->>'seq')::bigint AS seq FROM webhook_deliveries "
            "WHERE conversation_id = $1 AND event_type = 'message.created'", conversation_id)
    finally:
        await conn.close()
    seqs = [r["seq"] for r in rows]
    report.check(seqs == list(range(1, last_seq + 1)),
                 f"stored seqs are not 1..{last_seq} without gaps")
    report.check(sorted(r["seq"] for r in queued) == seqs,
                 "a message without its outbox row, or the reverse (half-written)")
    stored = {r["client_id"]: r["seq"] for r in rows}
    missing = [c for c, seq in acked.items() if stored.get(c) != seq]
    report.check(not missing, f"acknowledged but not stored as acknowledged: {missing[:5]}")
    return int(last_seq)


async def _check_sockets(report: Report, subscribers: list[Subscriber], last_seq: int) -> set[int]:
    expected = list(range(1, last_seq + 1))
    await asyncio.gather(*(s.has_seq(last_seq, SOCKET_WAIT) for s in subscribers),
                         return_exceptions=True)
    for s in subscribers:
        await s.stop()
    exact = [s.seqs == expected for s in subscribers]
    report.check(all(exact), f"{exact.count(False)} subscriber(s) did not get 1..{last_seq} "
                 "exactly once in order")
    seen = [set(s.seqs) for s in subscribers]
    return set.intersection(*seen) if seen else set()


async def _check_webhooks(stack: Stack, report: Report, cid: str, last_seq: int) -> set[int]:
    expected = set(range(1, last_seq + 1))

    async def arrived() -> None:
        while not expected <= set(stack.receiver.created_seqs(cid)):
            stack.receiver.arrived.clear()
            await stack.receiver.arrived.wait()

    try:
        await asyncio.wait_for(arrived(), WEBHOOK_WAIT)
    except TimeoutError:
        report.failures.append("webhooks missing: "
                               f"{sorted(expected - set(stack.receiver.created_seqs(cid)))[:5]}")
    seqs = stack.receiver.created_seqs(cid)
    first_seen = list(dict.fromkeys(seqs))
    report.check(first_seen == sorted(first_seen), "webhooks out of order")
    report.notes["webhook_repeats"] = len(seqs) - len(first_seen)
    return set(seqs)
