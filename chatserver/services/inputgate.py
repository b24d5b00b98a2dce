"""`config.on_input_during_run` at the door: which policy a conversation has, and for `reject`
whether a run is working, checked for a user's message before it is stored.

The check must not reorder a socket's pipelined messages: they reach the group committer in the
order read (`chatserver.realtime.inbound`). So a check either finishes without suspending (the
policy is remembered and is not `reject`), or waits its turn behind the check before it for the
same conversation; the caller hands the message to the committer (which queues it without
suspending) before the next check of that conversation resumes.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from chatserver.models import InputDuringRun
from chatserver.problems import Problem
from chatserver.store import runs as store

POLICIES_REMEMBERED = 100_000


class InputGate:
    def __init__(self, pool: asyncpg.Pool, ttl: float, size: int = POLICIES_REMEMBERED) -> None:
        self.pool = pool
        self.ttl = ttl  # [runs] policy_cache_ttl: a changed policy applies within this time
        self.size = size
        self.known: dict[uuid.UUID, tuple[float, InputDuringRun]] = {}
        self.tails: dict[uuid.UUID, asyncio.Future[None]] = {}  # the last check under way

    def remembered(self, conversation_id: uuid.UUID) -> InputDuringRun | None:
        cached = self.known.get(conversation_id)
        return cached[1] if cached is not None and cached[0] > time.monotonic() else None

    async def check(self, conversation_id: uuid.UUID) -> InputDuringRun:
        """The conversation's policy; 409 `run_active` under `reject` while a run is queued or
        running."""
        policy = self.remembered(conversation_id)
        if (policy is not None and policy is not InputDuringRun.REJECT
                and conversation_id not in self.tails):
            return policy
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
        async with self.pool.acquire() as conn:
            if policy is None:
                value = await store.get_policy(conn, conversation_id)
                policy = self._remember(conversation_id, value)
            working = await store.working_ids(conn, conversation_id) \
                if policy is InputDuringRun.REJECT else []
        if working:
            raise Problem(409, f"run {working[0].hex} is active; this conversation rejects input "
                               "during a run (config.on_input_during_run)", code="run_active")
        return policy

    def _remember(self, conversation_id: uuid.UUID, value: str | None) -> InputDuringRun:
        policy = InputDuringRun(value) if value in set(InputDuringRun) else InputDuringRun.ALLOW
        if len(self.known) >= self.size:
            del self.known[next(iter(self.known))]
        self.known[conversation_id] = (time.monotonic() + self.ttl, policy)
        return policy
