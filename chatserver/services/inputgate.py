"""`config.on_input_during_run` at the door: which policy a conversation has, and for `reject`
whether a run is working, checked for a user's message before it is stored.

The check must not reorder a socket's pipelined messages: they reach the group committer in the
order read (`chatserver.realtime.inbound`). So a check either finishes without suspending (the
policy is remembered and is not `reject`), or waits its turn behind the check before it for the
same conversation; the caller hands the message to the committer (which queues it without
suspending) before the next check of that conversation resumes.

Every batch of stored messages also reads its conversations' policies (the statement that
numbers them locks their rows anyway), so a conversation in use keeps its policy fresh for free.
Otherwise a remembered policy is used for `ttl` seconds (`[runs] policy_cache_ttl`) after it was
read, so a change applies within that time. A message that finds it older than half of that
still uses it and has it read again behind it. Policies are read in batches: every conversation
whose policy is due (unknown, timed out, or read again behind) in one loop iteration is read by
one query. So a busy conversation never waits for its policy, and thousands of conversations
starting at once, or kept busy, cost a few queries a second, not one per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import asyncpg

from chatserver.db.errors import TRANSIENT_ERRORS
from chatserver.models import InputDuringRun
from chatserver.problems import Problem
from chatserver.store import runs as store

log = logging.getLogger(__name__)

POLICIES_REMEMBERED = 100_000


class InputGate:
    def __init__(self, pool: asyncpg.Pool, ttl: float, size: int = POLICIES_REMEMBERED) -> None:
        self.pool = pool
        self.ttl = ttl  # [runs] policy_cache_ttl: a changed policy applies within this time
        self.size = size
        self.known: dict[uuid.UUID, tuple[float, InputDuringRun]] = {}  # id -> (read at, policy)
        self.tails: dict[uuid.UUID, asyncio.Future[None]] = {}  # the last check under way
        self.due: set[uuid.UUID] = set()  # to read in the batch below
        self.batch: asyncio.Future[None] | None = None  # resolved once `due` has been read
        self.reads: set[asyncio.Task[None]] = set()
        self.reading: set[uuid.UUID] = set()  # in a batch being read

    def remembered(self, conversation_id: uuid.UUID) -> InputDuringRun | None:
        cached = self.known.get(conversation_id)
        if cached is None or time.monotonic() - cached[0] >= self.ttl:
            return None
        return cached[1]

    async def check(self, conversation_id: uuid.UUID) -> InputDuringRun:
        """The conversation's policy; 409 `run_active` under `reject` while a run is queued or
        running."""
        cached = self.known.get(conversation_id)
        if (cached is not None and cached[1] is not InputDuringRun.REJECT
                and conversation_id not in self.tails):
            age = time.monotonic() - cached[0]
            if age < self.ttl:
                if age >= self.ttl / 2 and conversation_id not in self.reading:
                    self._read(conversation_id)
                return cached[1]
        previous = self.tails.get(conversation_id)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tails[conversation_id] = mine
        try:
            if previous is not None:
                await asyncio.wait([previous])  # its result is always None; never raises
            return await self._check(conversation_id)
        finally:
            mine.set_result(None)
            if self.tails.get(conversation_id) is mine:
                del self.tails[conversation_id]

    async def _check(self, conversation_id: uuid.UUID) -> InputDuringRun:
        policy = self.remembered(conversation_id)
        if policy is None:
            await asyncio.shield(self._read(conversation_id))
            # Not found: the conversation is gone, and storing the message will say so.
            policy = self.remembered(conversation_id) or InputDuringRun.ALLOW
        if policy is not InputDuringRun.REJECT:
            return policy
        async with self.pool.acquire() as conn:
            working = await store.working_ids(conn, conversation_id)
        if working:
            raise Problem(409, f"run {working[0].hex} is active; this conversation rejects input "
                               "during a run (config.on_input_during_run)", code="run_active")
        return policy

    def remember(self, conversation_id: uuid.UUID, value: str | None) -> None:
        policy = InputDuringRun(value) if value in set(InputDuringRun) else InputDuringRun.ALLOW
        if conversation_id not in self.known and len(self.known) >= self.size:
            del self.known[next(iter(self.known))]
        self.known[conversation_id] = (time.monotonic(), policy)

    def _read(self, conversation_id: uuid.UUID) -> asyncio.Future[None]:
        """The batch that reads this conversation's policy, started at the next iteration."""
        if self.batch is None:
            self.batch = asyncio.get_running_loop().create_future()
            self.batch.add_done_callback(_retrieved)
            task = asyncio.create_task(self._read_due(self.batch))
            self.reads.add(task)
            task.add_done_callback(self.reads.discard)
        self.due.add(conversation_id)
        return self.batch

    async def _read_due(self, batch: asyncio.Future[None]) -> None:
        """One query for every due policy. On a database error the messages waiting for it get
        the error, and the policies read again behind stay until their time is up."""
        await asyncio.sleep(0)  # the rest of this iteration's checks join
        due, self.due, self.batch = list(self.due), set(), None
        self.reading.update(due)
        try:
            async with self.pool.acquire() as conn:
                rows = await store.get_policies(conn, due)
        except BaseException as exc:
            if isinstance(exc, TRANSIENT_ERRORS):
                log.warning("could not read %d input policies: %r", len(due), exc)
            batch.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self.reading.difference_update(due)
        found = {row["id"]: row["policy"] for row in rows}
        for conversation_id in due:
            if conversation_id in found:
                self.remember(conversation_id, found[conversation_id])
            else:  # the conversation is gone
                self.known.pop(conversation_id, None)
        batch.set_result(None)


def _retrieved(batch: asyncio.Future[None]) -> None:
    """A batch read only behind (no message waits for it) has its error logged, not raised."""
    if not batch.cancelled():
        batch.exception()
