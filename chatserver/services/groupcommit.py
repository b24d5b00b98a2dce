"""Group commit: concurrent message posts share one transaction, each answered after its commit.

A post waits in `submit`. When fewer than `in_flight` batches are being committed, a batch starts
at the next event-loop iteration with every post waiting by then (up to `max_batch`); while batches
are being committed, new posts gather for the next one. So an idle server commits a lone message
at once, and a busy one commits many per transaction: per batch, ONE statement that finds the
already stored client_ids and inserts every other message with its seq (any mix of
conversations), one for the webhook outbox rows, and BEGIN/COMMIT.

Seqs follow submission order, also across batches, by construction: when a batch forms it takes
its turn in each of its conversations (`Lanes`), and it numbers its messages (the insert) only once
every earlier batch with one of those conversations is finished: committed, or failed and retried
to the end. So two posts submitted one after the other into the same conversation (e.g. a
websocket's pipelined sends) get increasing seqs whatever happens to the earlier one's batch, while
batches of other conversations commit concurrently. A batch waits for its turn inside its
transaction, so its BEGIN overlaps the commit before it.

A batch that fails (e.g. a client_id committed meanwhile by another batch) is retried one message
per transaction, so one bad message never fails the others.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from chatserver.models import MESSAGE_CREATED
from chatserver.store import messages as store
from chatserver.store import participants
from chatserver.store.messages import NewMessage
from chatserver.webhooks import outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """What a post came to: the message row (None: no such conversation), and whether it is new."""

    row: asyncpg.Record | None
    created: bool


@dataclass(eq=False)  # hashed by identity: two posts may carry equal messages
class _Post:
    new: NewMessage
    done: asyncio.Future[Stored] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def key(self) -> tuple[uuid.UUID, str] | None:
        return None if self.new.client_id is None else (self.new.conversation_id,
                                                        self.new.client_id)


class GroupCommitter:
    def __init__(self, pool: asyncpg.Pool, *, max_batch: int, in_flight: int) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.in_flight = in_flight
        self._waiting: list[_Post] = []
        self._running = 0
        self._lanes = Lanes()
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, new: NewMessage) -> Stored:
        """Store `new` (or find its idempotent twin); returns after the commit."""
        post = _Post(new)
        self._waiting.append(post)
        self._maybe_start()
        return await post.done

    def _maybe_start(self) -> None:
        if self._waiting and self._running < self.in_flight:
            self._running += 1
            task = asyncio.create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        # Started from submit: this first step runs one iteration later, so posts that arrive
        # in the same iteration (e.g. frames read from one socket buffer) join the batch.
        batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
        # An empty batch (its posts were taken by a task started just before) takes no turn.
        turn = self._lanes.join({p.new.conversation_id for p in batch}) if batch else None
        try:
            if turn is not None:
                await self._commit_batch(batch, turn)
        finally:
            if turn is not None:
                turn.done()
            self._running -= 1
            self._maybe_start()

    async def _commit_batch(self, batch: list[_Post], turn: Turn) -> None:
        try:
            async with self.pool.acquire() as conn:
                try:
                    results = await _commit(conn, batch, turn)
                except asyncpg.PostgresError as exc:
                    if len(batch) > 1:
                        log.info("batch of %d failed (%r); one transaction per message",
                                 len(batch), exc)
                    await turn.wait()
                    await _commit_each(conn, batch)
                    return
        except BaseException as exc:
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for post, result in zip(batch, results, strict=True):
            if not post.done.done():
                post.done.set_result(result)


@dataclass
class Turn:
    """A batch's place in its conversations' order: wait for the batches before, then let the
    next go. `mine` resolves only after `before` did, so the order holds even when a batch ends
    early (a connection that could not be had) while an earlier one is still running."""

    before: list[asyncio.Future[None]]
    mine: asyncio.Future[None]

    async def wait(self) -> None:
        if self.before:
            # Resolved by those batches' own tasks, whatever happens to this one.
            await asyncio.shield(asyncio.gather(*self.before))

    def done(self) -> None:
        pending = [f for f in self.before if not f.done()]
        if pending:
            asyncio.gather(*pending).add_done_callback(lambda _: self._resolve())
        else:
            self._resolve()

    def _resolve(self) -> None:
        if not self.mine.done():
            self.mine.set_result(None)


class Lanes:
    """Per conversation, the turn of the latest batch formed there (until it is done)."""

    def __init__(self) -> None:
        self._last: dict[uuid.UUID, asyncio.Future[None]] = {}

    def join(self, conversations: set[uuid.UUID]) -> Turn:
        """The turn of a batch formed now, after every unfinished batch of `conversations`."""
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        before = {id(f): f for c in conversations if (f := self._last.get(c)) is not None}
        for conversation in conversations:
            self._last[conversation] = mine
        mine.add_done_callback(lambda _: self._forget(conversations, mine))
        return Turn(list(before.values()), mine)

    def _forget(self, conversations: set[uuid.UUID], turn: asyncio.Future[None]) -> None:
        for conversation in conversations:
            if self._last.get(conversation) is turn:
                del self._last[conversation]


async def _commit(conn: Any, batch: list[_Post], turn: Turn) -> list[Stored]:
    """One transaction for the whole batch; a result per post, in batch order."""
    unique = _first_of_each_key(batch)
    async with conn.transaction():
        await turn.wait()
        returned = await store.insert_messages(conn, [p.new for p in unique])
        # Sorted by seq: the outbox keeps each conversation's order.
        rows = sorted((r for r in returned if r["created"]), key=lambda r: r["seq"])
        await outbox.enqueue_message_events(conn, MESSAGE_CREATED, rows)
        await participants.advance_own_horizons(conn, rows)
    found = {(r["conversation_id"], r["client_id"]): r for r in returned if not r["created"]}
    inserted = {(r["conversation_id"], r["client_id"]): r for r in rows if r["client_id"]}
    by_post = _match_rows([p for p in unique if p.key not in found], rows)
    results = []
    for post in batch:
        row = by_post.get(post)
        if row is not None:
            results.append(Stored(row, created=True))
        elif post.key is not None and (post.key in found or post.key in inserted):
            results.append(Stored(found.get(post.key) or inserted[post.key], created=False))
        else:
            results.append(Stored(None, created=False))  # its conversation is gone
    return results


def _first_of_each_key(batch: list[_Post]) -> list[_Post]:
    """Posts to store: only the first of the batch per client_id (the others are its replays)."""
    seen: set[tuple[uuid.UUID, str]] = set()
    unique = []
    for post in batch:
        key = post.key
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        unique.append(post)
    return unique


def _match_rows(fresh: list[_Post], rows: list[asyncpg.Record]) -> dict[_Post, Any]:
    """Which inserted row belongs to which post: per conversation, seqs follow batch order."""
    per_conversation: dict[uuid.UUID, list[Any]] = {}
    for row in rows:  # sorted by seq
        per_conversation.setdefault(row["conversation_id"], []).append(row)
    matched: dict[_Post, Any] = {}
    for post in fresh:
        queue = per_conversation.get(post.new.conversation_id)
        if queue:
            matched[post] = queue.pop(0)
    return matched


async def _commit_each(conn: Any, batch: list[_Post]) -> None:
    for post in batch:
        try:
            result = await _commit_one(conn, post.new)
        except Exception as exc:  # noqa: BLE001 - it belongs to this post's caller alone
            if not post.done.done():
                post.done.set_exception(exc)
        else:
            if not post.done.done():
                post.done.set_result(result)


async def _commit_one(conn: Any, new: NewMessage) -> Stored:
    """The one-message transaction (the fallback of a failed batch)."""
    if new.client_id is not None:
        existing = await store.get_by_client_id(conn, new.conversation_id, new.client_id)
        if existing is not None:
            return Stored(existing, created=False)
    try:
        async with conn.transaction():
            row = await store.insert_message(conn, new)
            if row is not None:
                await outbox.enqueue_message_event(conn, MESSAGE_CREATED, row)
                await participants.advance_own_horizons(conn, [row])
    except asyncpg.UniqueViolationError:
        # A concurrent request with the same client_id committed first.
        assert new.client_id is not None
        existing = await store.get_by_client_id(conn, new.conversation_id, new.client_id)
        return Stored(existing, created=False)
    return Stored(row, created=row is not None)


def _fail(batch: list[_Post], exc: BaseException) -> None:
    for post in batch:
        if not post.done.done():
            post.done.set_exception(exc if isinstance(exc, Exception) else ConnectionError(exc))
