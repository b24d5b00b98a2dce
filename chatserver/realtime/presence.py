"""Presence: who is connected to a conversation, across every instance.

Each socket is one entry `<socket id>:<user>`; an observer's socket id starts with
`OBSERVER_PREFIX` (a socket id is otherwise hex), so observers are listed apart. In memory for a
single instance; with Redis, a sorted set per conversation (its key hash-tagged with the
conversation, so on a Redis Cluster it sits on the primary that carries the conversation's
channel; every command names one key) scored by expiry time, refreshed by the owning instance
every `ttl / 3` seconds (the supervised task `presence-refresh`, not required for readiness), so
the sockets of an instance that died drop out after `ttl`. Join and leave events travel as
ephemeral frames through the hub; this module only answers "who is here".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from chatserver.server.supervisor import Supervisor

log = logging.getLogger(__name__)

KEY_PREFIX = "chatserver:presence:"
REFRESH_TASK = "presence-refresh"
OBSERVER_PREFIX = "o"


class Roster(NamedTuple):
    """Distinct users with at least one socket, sorted: members, and observers apart."""

    members: list[str]
    observers: list[str]


def roster_of(entries: Iterable[tuple[str, str]]) -> Roster:
    """The roster of (socket id, user) entries."""
    members: set[str] = set()
    observers: set[str] = set()
    for socket_id, user in entries:
        (observers if socket_id.startswith(OBSERVER_PREFIX) else members).add(user)
    return Roster(sorted(members), sorted(observers - members))


class Presence(Protocol):
    async def start(self, supervisor: Supervisor) -> None: ...

    async def close(self) -> None: ...

    async def add(self, conversation_id: uuid.UUID, socket_id: str, user: str) -> None: ...

    async def remove(self, conversation_id: uuid.UUID, socket_id: str) -> None: ...

    async def roster(self, conversation_id: uuid.UUID) -> Roster: ...


class LocalEntries:
    """This instance's entries: conversation -> socket id -> user."""

    def __init__(self) -> None:
        self.entries: dict[uuid.UUID, dict[str, str]] = {}

    def put(self, conversation_id: uuid.UUID, socket_id: str, user: str) -> None:
        self.entries.setdefault(conversation_id, {})[socket_id] = user

    def drop(self, conversation_id: uuid.UUID, socket_id: str) -> None:
        sockets = self.entries.get(conversation_id, {})
        sockets.pop(socket_id, None)
        if not sockets:
            self.entries.pop(conversation_id, None)


class MemoryPresence(LocalEntries):
    async def start(self, supervisor: Supervisor) -> None:
        pass

    async def close(self) -> None:
        self.entries.clear()

    async def add(self, conversation_id: uuid.UUID, socket_id: str, user: str) -> None:
        self.put(conversation_id, socket_id, user)

    async def remove(self, conversation_id: uuid.UUID, socket_id: str) -> None:
        self.drop(conversation_id, socket_id)

    async def roster(self, conversation_id: uuid.UUID) -> Roster:
        return roster_of(self.entries.get(conversation_id, {}).items())


class RedisPresence(LocalEntries):
    def __init__(self, client: Redis | RedisCluster, ttl: float) -> None:
        super().__init__()
        self.client = client
        self.ttl = ttl
        self._supervisor: Supervisor | None = None

    async def start(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        supervisor.start(REFRESH_TASK, self._refresh_loop, required=False)

    async def close(self) -> None:
        if self._supervisor is not None:
            await self._supervisor.stop(REFRESH_TASK)

    async def add(self, conversation_id: uuid.UUID, socket_id: str, user: str) -> None:
        self.put(conversation_id, socket_id, user)
        await self._write({conversation_id: {socket_id: user}})

    async def remove(self, conversation_id: uuid.UUID, socket_id: str) -> None:
        user = self.entries.get(conversation_id, {}).get(socket_id)
        self.drop(conversation_id, socket_id)
        if user is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.client.zrem(_key(conversation_id), f"{socket_id}:{user}")

    async def roster(self, conversation_id: uuid.UUID) -> Roster:
        key = _key(conversation_id)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(key, "-inf", time.time())
                pipe.zrange(key, 0, -1)
                _, entries = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.debug("presence read failed, answering with local sockets: %r", exc)
            return roster_of(self.entries.get(conversation_id, {}).items())
        return roster_of(_split(e.decode()) for e in entries)

    async def _write(self, entries: dict[uuid.UUID, dict[str, str]]) -> None:
        expires = time.time() + self.ttl
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for conversation_id, sockets in entries.items():
                    key = _key(conversation_id)
                    pipe.zadd(key, {f"{sid}:{user}": expires for sid, user in sockets.items()})
                    pipe.expire(key, int(self.ttl * 2) + 1)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.debug("presence write failed (refreshed later): %r", exc)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            if self.entries:
                await self._write({cid: dict(s) for cid, s in self.entries.items()})


def _split(entry: str) -> tuple[str, str]:
    socket_id, _, user = entry.partition(":")
    return socket_id, user


def _key(conversation_id: uuid.UUID) -> str:
    return f"{KEY_PREFIX}{{{conversation_id.hex}}}"
