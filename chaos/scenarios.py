"""The four fault scenarios. Each builds its own Stack, publishes under load, breaks something for
real, and reports what clients, sockets and the webhook receiver saw (see stack.verify).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from chaos.clients import Outcome, RestPublisher, SocketPublisher, auth
from chaos.processes import Postgres
from chaos.stack import Report, Stack, verify
from chatserver.server.shutdown import FORCED_EXIT_CODE

PAUSE = 0.03  # between one publisher's messages
POLL = 0.05
OUTAGE_WAIT = 30.0  # bound on waiting for /readyz to see an outage begin or end


@dataclass(frozen=True)
class Timing:
    """How long each phase lasts (seconds): before the fault, during it, after it."""

    before: float
    during: float
    after: float


SHORT = Timing(before=1.5, during=2.0, after=1.5)
FULL = Timing(before=5.0, during=8.0, after=5.0)


class Load:
    """REST and websocket publishers on one conversation, started and stopped together."""

    def __init__(self, stack: Stack, cid: str, publishers_per_kind: int) -> None:
        self.stop = asyncio.Event()
        self.publishers: list[RestPublisher | SocketPublisher] = []
        # Publisher pair n starts on instance n: the first instance (the victim) has both kinds.
        for n in range(publishers_per_kind):
            self.publishers.append(
                RestPublisher(stack.urls, n, cid, stack.key, f"rest{n}", PAUSE))
            self.publishers.append(
                SocketPublisher(stack.urls, n, cid, stack.key, f"ws{n}", PAUSE))
        assert stack.http is not None
        self.tasks = [asyncio.create_task(p.run(stack.http, self.stop)) for p in self.publishers]

    async def finish(self) -> list[Outcome]:
        self.stop.set()
        return list(await asyncio.gather(*self.tasks))


def failed_attempts(outcomes: list[Outcome]) -> Counter[str]:
    total: Counter[str] = Counter()
    for outcome in outcomes:
        total.update(outcome.statuses)
    return total


async def until(check: Callable[[], Awaitable[bool]], timeout: float = OUTAGE_WAIT) -> bool:
    """Poll `check` until true; False if it never became true within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(POLL)
    return False


async def kill9(postgres: Postgres, workdir: Path, timing: Timing) -> Report:
    """kill -9 one of three instances while REST and websocket publishers post."""
    report = Report("kill9")
    async with Stack(postgres, workdir, "kill9", instances=3) as stack:
        cid = await stack.conversation()
        subscribers = await stack.subscribers(cid, per_instance=2)
        load = Load(stack, cid, publishers_per_kind=2)
        await asyncio.sleep(timing.before)
        victim = stack.instances[0]
        victim.kill()
        await victim.wait(10)
        await asyncio.sleep(timing.during + timing.after)
        outcomes = await load.finish()
        await verify(stack, report, cid, outcomes, subscribers)
        report.notes["failed_attempts"] = dict(failed_attempts(outcomes))
        report.check(sum(1 for i in stack.instances if i.running) == 2, "a survivor died")
    return report


async def redis_outage(postgres: Postgres, workdir: Path, timing: Timing) -> Report:
    """Redis killed and restarted under load; /readyz reports the outage meanwhile."""
    report = Report("redis")
    async with Stack(postgres, workdir, "redis") as stack:
        cid = await stack.conversation()
        subscribers = await stack.subscribers(cid, per_instance=2)
        load = Load(stack, cid, publishers_per_kind=2)
        await asyncio.sleep(timing.before)
        stack.redis.kill()
        saw_down = await _all_ready(stack, lambda r: r["bus"]["state"] != "ok")
        await asyncio.sleep(timing.during)
        stack.redis.start()
        saw_up = await _all_ready(stack, lambda r: r["bus"]["state"] == "ok")
        await asyncio.sleep(timing.after)
        outcomes = await load.finish()
        await verify(stack, report, cid, outcomes, subscribers)
        report.check(saw_down, "/readyz did not report the Redis outage")
        report.check(saw_up, "/readyz did not report the bus back")
        report.notes["readyz_saw_outage"] = saw_down
    return report


async def _all_ready(stack: Stack, predicate: Callable[[dict[str, Any]], bool]) -> bool:
    async def check() -> bool:
        answers = [await stack.readyz(i) for i in stack.instances]
        return all(predicate(a) for a in answers)

    return await until(check)


async def postgres_outage(postgres: Postgres, workdir: Path, timing: Timing) -> Report:
    """Postgres stopped and started again: 503 + Retry-After meanwhile, recovery without restart."""
    report = Report("postgres")
    async with Stack(postgres, workdir, "postgres") as stack:
        cid = await stack.conversation()
        subscribers = await stack.subscribers(cid, per_instance=2)
        pids = [i.pid for i in stack.instances]
        load = Load(stack, cid, publishers_per_kind=2)
        await asyncio.sleep(timing.before)
        await asyncio.to_thread(postgres.stop)
        saw_down = await _all_ready(stack, lambda r: r["checks"]["database"] != "ok")
        await asyncio.sleep(timing.during)
        await asyncio.to_thread(postgres.start)
        saw_up = await _all_ready(stack, lambda r: r["status"] == "ready")
        await asyncio.sleep(timing.after)
        outcomes = await load.finish()
        await verify(stack, report, cid, outcomes, subscribers)
        failures = failed_attempts(outcomes)
        report.notes["failed_attempts"] = dict(failures)
        report.check(failures["503"] + failures["unavailable"] > 0,
                     "no post met the outage (no 503 and no unavailable frame)")
        errors = [k for k in failures if k.isdigit() and k.startswith("5") and k != "503"]
        report.check(not errors, f"answers other than 503 during the outage: {errors}")
        missing = sum(o.retry_after_missing for o in outcomes)
        report.check(missing == 0, f"{missing} 503 answer(s) without Retry-After")
        report.check(saw_down and saw_up, "/readyz did not follow the outage")
        report.check([i.pid for i in stack.instances if i.running] == pids,
                     "an instance restarted or died")
    return report


SLOW_SEND = 8  # seconds a slow webhook endpoint takes: longer than the shutdown budget
MAX_SLOW_CONVERSATIONS = 10


async def sigterm(postgres: Postgres, workdir: Path, timing: Timing) -> Report:
    """SIGTERM one instance with sockets open, a request and webhook sends in flight."""
    report = Report("sigterm")
    budget = 4.0
    env = {"CHATSERVER_SERVER_SHUTDOWN_TIMEOUT": str(budget),
           "CHATSERVER_WEBHOOKS_TIMEOUT": str(SLOW_SEND + 2)}
    async with Stack(postgres, workdir, "sigterm", **env) as stack:
        cid = await stack.conversation()
        slow: list[str] = []
        subscribers = await stack.subscribers(cid, per_instance=2)
        load = Load(stack, cid, publishers_per_kind=1)
        victim = stack.instances[0]
        held = await _until_victim_holds_a_claim(stack, victim.pid, slow)
        report.check(held, "the instance never held a webhook claim to release")
        await asyncio.sleep(timing.before)
        in_flight = asyncio.create_task(_slow_request(stack, victim))
        await until(lambda: _has_hook(stack, "/slow/1"), timeout=10)
        started = time.monotonic()
        victim.terminate()
        code = await victim.wait(budget + 10)
        took = time.monotonic() - started
        answered = await in_flight
        await asyncio.sleep(timing.after)
        outcomes = await load.finish()
        await verify(stack, report, cid, outcomes, subscribers)
        closes = [c for s in subscribers for c in s.close_codes]
        released = not await _claims_of(stack, victim.pid)
        report.notes.update(exit_code=code, exit_seconds=round(took, 2), closes_1001=closes.count(
            1001), in_flight_status=answered, released_claims=released)
        report.check(code == 0, f"exit code {code}" + (
            " (forced at the deadline)" if code == FORCED_EXIT_CODE else ""))
        report.check(took <= budget + 1, f"exit took {took:.1f} s, budget {budget} s")
        report.check(answered == 200, f"the in-flight request got {answered}")
        report.check(closes.count(1001) >= 2, f"sockets on the instance saw {closes}, not 1001")
        report.check(released, "claims of the stopped instance were not released")
        for slow_cid in slow:
            ok = await until(lambda c=slow_cid: _succeeded(stack, c), timeout=SLOW_SEND * 4 + 10)
            report.check(ok, f"a slow delivery of {slow_cid} was never completed elsewhere")
    return report


async def _until_victim_holds_a_claim(stack: Stack, pid: int, slow: list[str]) -> bool:
    """Queue slow deliveries (one per new conversation) until the victim's dispatcher holds one:
    which dispatcher claims a delivery is up to the race between them."""
    for _ in range(MAX_SLOW_CONVERSATIONS):
        slow.append(await stack.conversation(f"/slow/{SLOW_SEND}"))
        await _post(stack, slow[-1])
        slow_ids = [str(uuid.UUID(hex=c)) for c in slow]
        if await until(lambda: _claims_of(stack, pid, slow_ids), timeout=1):  # noqa: B023
            return True
    return False


async def _post(stack: Stack, cid: str) -> None:
    assert stack.http is not None
    async with stack.http.post(f"{stack.instances[0].url}/conversations/{cid}/messages",
                               json={"content": "slow"}, headers=auth(stack.key)) as resp:
        assert resp.status == 201, await resp.text()


async def _claims_of(stack: Stack, pid: int, cids: list[str] | None = None) -> bool:
    """Whether the dispatcher of process `pid` holds a claim (on one of `cids`, if given)."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' AND locked_by LIKE "
            "'%:' || $1::text || ':%' AND ($2::text[] IS NULL OR conversation_id::text = ANY($2))",
            str(pid), cids))
    finally:
        await conn.close()


async def _slow_request(stack: Stack, instance: Any) -> int:
    """POST .../webhook-test on a conversation whose endpoint takes 1 s: a request in flight."""
    assert stack.http is not None
    cid = await stack.conversation("/slow/1")
    async with stack.http.post(f"{instance.url}/conversations/{cid}/webhook-test",
                               headers=auth(stack.key)) as resp:
        return resp.status


async def _has_hook(stack: Stack, path: str) -> bool:
    return any(h.path == path for h in stack.receiver.hooks)


async def _succeeded(stack: Stack, cid: str) -> bool:
    """True once a delivery for `cid` is recorded as succeeded (by an instance still running)."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE conversation_id = $1::text::uuid "
            "AND status = 'succeeded'", cid))
    finally:
        await conn.close()


SCENARIOS = {
    "kill9": kill9,
    "redis": redis_outage,
    "postgres": postgres_outage,
    "sigterm": sigterm,
}
