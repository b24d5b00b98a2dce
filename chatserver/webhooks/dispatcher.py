"""The webhook dispatcher: claims due deliveries, sends them, records what happened.

Shaped like arq's Worker: `main()` loops over `_poll_iteration()` until `close()`; `burst=True`
returns once nothing is due and nothing is in flight (for tests and one-off drains). It wakes on
`LISTEN chatserver_webhooks` (a trigger notifies on every queued delivery) and polls every
`[webhooks] poll_interval` seconds as the fallback.

With `ordering = "strict"` each claim walks the queues round robin from where the last one
stopped, locks endpoint rows (`FOR UPDATE SKIP LOCKED`) and takes only the head of each queue (one
endpoint's deliveries of one conversation), and only when nothing of that queue is in flight or in
backoff, so a consumer receives one conversation's deliveries one at a time, in outbox order; a
team endpoint gets its conversations in parallel.

Slots are shared fairly between endpoints: with n endpoints sending, each may hold at most
`concurrency // (n + 1)` of them (at least one; half of them when it is alone), the `+ 1` keeping
a share free for an endpoint that has nothing in flight yet. A slow or failing endpoint thus holds
its share, not every slot, and the others keep their latency.
A busy dispatcher (over three quarters of its slots sending) waits `[webhooks] claim_gather`
seconds after a send ends before it claims, so one claim fills the slots freed meanwhile.
Claims are leases (`locked_until`): if a dispatcher dies mid-send, its deliveries become due again
once the lease runs out ([webhooks] timeout + LEASE_MARGIN seconds). A dispatcher that is closed
(on SIGTERM) releases its claims instead, so they go out at once from another instance. While
Postgres is unreachable the loop claims nothing and keeps trying at each poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections import Counter
from typing import Any

import asyncpg
import orjson

from chatserver.config import WebhookSettings
from chatserver.db.errors import TRANSIENT_ERRORS, UNAVAILABLE_ERRORS
from chatserver.metrics import Metrics
from chatserver.security.box import SecretBox
from chatserver.store import webhooks as store
from chatserver.webhooks.schedule import Decision, Verdict, decide
from chatserver.webhooks.sender import AttemptResult, WebhookSender

log = logging.getLogger(__name__)

CHANNEL = "chatserver_webhooks"
LEASE_MARGIN = 30.0
LISTEN_BACKOFF_MAX = 30.0

# Delivery status written for each verdict of a scheduled attempt.
_STATUS = {
    Verdict.SUCCEEDED: "succeeded",
    Verdict.FAILED: "failed",
    Verdict.RETRY: "pending",
    Verdict.GONE: "pending",  # held until the endpoint is enabled again
    Verdict.REFUSED: "failed",  # terminal: the SSRF guard refused the callback_url
}


def job_secrets(job: Any, box: SecretBox) -> list[str]:
    """The current secret, and the previous one while its rotation grace period lasts (decrypted
    when stored encrypted)."""
    return [box.open(s) for s in (job["secret"], job["previous_secret"]) if s]


def job_body(job: Any) -> bytes:
    return orjson.dumps(job["payload"])


class Dispatcher:
    def __init__(
        self, pool: asyncpg.Pool, settings: WebhookSettings, sender: WebhookSender, *,
        burst: bool = False, name: str | None = None, metrics: Metrics | None = None,
        box: SecretBox | None = None,
    ) -> None:
        self.pool = pool
        self.box = box or SecretBox()
        self.settings = settings
        self.sender = sender
        self.burst = burst
        self.metrics = metrics
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = settings.timeout + LEASE_MARGIN
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: Counter[uuid.UUID] = Counter()  # sends per endpoint
        # Strict claims walk the queues round robin from here (the last queue claimed).
        self._cursor = (uuid.UUID(int=0), uuid.UUID(int=0))
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._db_down = False

    async def main(self) -> None:
        """Run until close() (or, in burst mode, until nothing is due or in flight)."""
        if self._listener is None and not self.burst:
            self._listener = asyncio.create_task(self._listen(), name="webhooks-listen")
        while not self._closing:
            claimed = await self._poll_or_wait_for_db()
            if not claimed:
                # A send that ended during the claim (it set _wake) frees room it did not see.
                if self.burst and not self._tasks and not self._wake.is_set():
                    return
                await self._sleep()
            await self._gather_free_slots()

    async def _gather_free_slots(self) -> None:
        """While over three quarters of the slots are busy, let a few more sends end before
        claiming, so that a busy dispatcher claims several heads per statement group instead of
        one per finished send (`[webhooks] claim_gather`)."""
        busy = len(self._tasks)
        if busy and busy > self.settings.concurrency * 3 // 4 and self.settings.claim_gather > 0:
            await asyncio.sleep(self.settings.claim_gather)

    async def _poll_or_wait_for_db(self) -> int:
        """One poll; while Postgres is unreachable, claim nothing and try again next poll."""
        try:
            claimed = await self._poll_iteration()
        except UNAVAILABLE_ERRORS as exc:
            if not self._db_down:
                log.warning("webhook claims paused, the database is unavailable: %r", exc)
            self._db_down = True
            return 0
        if self._db_down:
            log.info("webhook claims resumed, the database is back")
            self._db_down = False
        return claimed

    async def _poll_iteration(self) -> int:
        """Claim as many due deliveries as there are free slots and start sending them."""
        self._wake.clear()
        free = self.settings.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        jobs = await self._claim(free)
        for job in jobs:
            endpoint_id = job["endpoint_id"]
            self._in_flight[endpoint_id] += 1
            task = asyncio.create_task(self._deliver(job), name=f"webhook-{job['id'].hex}")
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._task_done, endpoint_id=endpoint_id))
        return len(jobs)

    def share(self, sending: int) -> int:
        """The most slots one endpoint may hold while `sending` endpoints (itself included) send."""
        return max(1, self.settings.concurrency // (sending + 1))

    def rooms(self) -> tuple[dict[uuid.UUID, int], int]:
        """How many more sends each busy endpoint may start, and the room of any other."""
        busy = len(self._in_flight)
        share = self.share(busy)
        return ({e: max(0, share - n) for e, n in self._in_flight.items()},
                self.share(busy + 1))

    def stop_claiming(self) -> None:
        """Claim nothing more; `main()` returns, sends in flight go on until `close()`."""
        self._closing = True
        self._wake.set()

    async def close(self, grace: float | None = None) -> None:
        """Stop claiming, give in-flight sends up to `grace` seconds (None: until they end, which
        the send timeout bounds), cancel the rest, and release every claim still held, so another
        dispatcher sends those deliveries at once instead of after the lease."""
        self.stop_claiming()
        if self._listener is not None:
            self._listener.cancel()
            # gather, not suppress(CancelledError): a cancel of close() itself must go on.
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._finish_sends(grace)
        with contextlib.suppress(*UNAVAILABLE_ERRORS, asyncpg.PostgresError):
            async with self.pool.acquire() as conn:
                await store.release_claims(conn, self.name)

    async def _finish_sends(self, grace: float | None) -> None:
        tasks = set(self._tasks)
        if not tasks:
            return
        late = tasks
        if grace is None or grace > 0:
            _, late = await asyncio.wait(tasks, timeout=grace)
        if late:
            log.info("cancelling %d webhook send(s) still in flight; their claims are released",
                     len(late))
            for task in late:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- claiming ------------------------------------------------------------------------------

    async def _claim(self, limit: int) -> list[Any]:
        rooms, room = self.rooms()
        async with self.pool.acquire() as conn, conn.transaction():
            if self.settings.ordering == "strict":
                jobs, self._cursor = await store.claim_heads(
                    conn, limit, self.name, self.lease, rooms, room, self._cursor)
                return jobs
            return await store.claim_due(conn, limit, self.name, self.lease, rooms, room)

    def _task_done(self, task: asyncio.Task[None], *, endpoint_id: uuid.UUID) -> None:
        self._tasks.discard(task)
        self._in_flight[endpoint_id] -= 1
        if self._in_flight[endpoint_id] <= 0:
            del self._in_flight[endpoint_id]
        self._wake.set()  # a slot is free, and in strict order the next head may be ready
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed", exc_info=task.exception())

    async def _sleep(self) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that arrives as
        # the event is set, and a supervisor stopping this task would wait forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.poll_interval):
                await self._wake.wait()

    # --- sending -------------------------------------------------------------------------------

    async def _deliver(self, job: Any) -> None:
        result = await self.sender.send(job["url"], job["id"].hex, job_body(job),
                                       job_secrets(job, self.box))
        decision = decide(result, job["scheduled_failures"], self.settings)
        if self.metrics is not None:
            self.metrics.webhook_attempts.labels(decision.verdict.value).inc()
        await self._record_when_possible(job, result, decision)

    async def _record_when_possible(
        self, job: Any, result: AttemptResult, decision: Decision
    ) -> None:
        """Record the outcome; while Postgres is away, keep trying for half the lease margin (the
        claim still holds then), so a sent webhook is not sent again just for an outage."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + LEASE_MARGIN / 2
        warned = False
        while True:
            try:
                await self._record(job, result, decision)
                return
            except UNAVAILABLE_ERRORS as exc:
                if loop.time() >= give_up_at:
                    raise
                if not warned:
                    log.warning("webhook %s: outcome not recorded yet, the database is "
                                "unavailable (%r); retrying", job["id"].hex, exc)
                    warned = True
            await asyncio.sleep(self.settings.poll_interval)

    async def _record(self, job: Any, result: AttemptResult, decision: Decision) -> None:
        endpoint_id = job["endpoint_id"]
        succeeded = decision.verdict is Verdict.SUCCEEDED
        async with self.pool.acquire() as conn:
            if succeeded and not job["endpoint_failing"]:
                await self._finish(conn, job, result, decision)  # the usual case: one statement
                return
            async with conn.transaction():
                await self._finish(conn, job, result, decision)
                if succeeded:
                    await store.endpoint_succeeded(conn, endpoint_id)
                    return
                await self._record_failure(conn, job, result, decision)

    async def _finish(
        self, conn: Any, job: Any, result: AttemptResult, decision: Decision
    ) -> None:
        """The delivery's new state and its attempt; a lost claim only logs the attempt."""
        attempt = (result.status_code, result.response_body, result.error, result.duration_ms)
        if await store.finish_scheduled(
            conn, job["id"], self.name, _STATUS[decision.verdict], decision.delay,
            decision.verdict is not Verdict.SUCCEEDED, *attempt,
        ):
            return
        log.info("webhook %s: claim lost before the outcome was recorded", job["id"].hex)
        await store.record_attempt(conn, job["id"], "scheduled", *attempt)

    async def _record_failure(
        self, conn: Any, job: Any, result: AttemptResult, decision: Decision
    ) -> None:
        endpoint_id = job["endpoint_id"]
        self._log_failure(job, result, decision)
        if decision.verdict is Verdict.RETRY and decision.delay < self.settings.poll_interval:
            # Come back for it on time rather than at the next poll.
            asyncio.get_running_loop().call_later(decision.delay, self._wake.set)
        if decision.verdict is Verdict.GONE:
            await self._disable(conn, endpoint_id, "the endpoint answered 410 Gone")
            return
        failing_for = await store.endpoint_failed(conn, endpoint_id)
        if failing_for >= self.settings.disable_after:
            await self._disable(
                conn, endpoint_id, f"failing for {int(failing_for)} s without a success"
            )

    @staticmethod
    async def _disable(conn: Any, endpoint_id: uuid.UUID, reason: str) -> None:
        if await store.disable_endpoint(conn, endpoint_id, reason) is not None:
            log.warning("webhook endpoint %s disabled: %s", endpoint_id.hex, reason)

    @staticmethod
    def _log_failure(job: Any, result: AttemptResult, decision: Decision) -> None:
        if decision.verdict is Verdict.REFUSED:
            log.warning("webhook %s to conversation %s refused, not retried: %s",
                        job["id"].hex, job["conversation_id"].hex, result.error)
            return
        log.info(
            "webhook %s to endpoint %s failed (status %s%s): %s%s",
            job["id"].hex, job["endpoint_id"].hex, result.status_code,
            f", {result.error}" if result.error else "", decision.verdict,
            f" in {decision.delay:.1f} s" if decision.verdict is Verdict.RETRY else "",
        )

    # --- wake-ups ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Hold a LISTEN connection, reconnecting with capped backoff; polling covers the gaps."""
        backoff = 1.0
        while True:
            try:
                await self._listen_once()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except TRANSIENT_ERRORS as exc:
                log.warning("webhook LISTEN connection lost (%s); retrying in %.0f s", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, LISTEN_BACKOFF_MAX)

    async def _listen_once(self) -> None:
        lost = asyncio.Event()

        def notified(*_: Any) -> None:
            self._wake.set()

        async with self.pool.acquire() as conn:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, notified)
            try:
                self._wake.set()  # catch up on anything queued while we were not listening
                await lost.wait()
            finally:
                with contextlib.suppress(OSError, asyncpg.InterfaceError):
                    await conn.remove_listener(CHANNEL, notified)
