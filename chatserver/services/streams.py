"""Streamed messages: open, append deltas, complete or abort, and abort idle ones.

An agent opens a stream (a message stored at once with its seq, `stream.state` open), appends
deltas by consecutive index, then completes or aborts it. Deltas are fanned out as soon as they
are checked (`StreamEvents.stream_deltas`) and acknowledged once durable: they are written by
group commit (`chatserver.services.streamcommit`). The opening writes `message.created` to the
webhook outbox and the close writes `message.completed`, each in the transaction of its change;
no webhook is written per delta.

Who may stream is `may_stream`, and who may append to a stream `may_append`: the one place to
widen when other credentials may stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from chatserver.auth.keys import Principal
from chatserver.config import StreamSettings
from chatserver.db.errors import TRANSIENT_ERRORS
from chatserver.models import (
    MESSAGE_COMPLETED,
    MESSAGE_CREATED,
    MessageStatus,
    StreamState,
    message_json,
)
from chatserver.problems import Problem, ValidationProblem, not_found
from chatserver.ratelimit import TokenBucket
from chatserver.services.messages import ConversationTeams, Posted, replay
from chatserver.services.streamcommit import StreamCommitter
from chatserver.services.streamstate import Delta, LiveStream, StreamConflict, check_transition
from chatserver.store import messages as message_store
from chatserver.store import streams as store
from chatserver.store.messages import NewMessage
from chatserver.validation import Fields
from chatserver.webhooks import outbox

log = logging.getLogger(__name__)

COMPLETE_FIELDS = ("content", "status", "metadata")
REASON_MAX = 200
IDLE_BATCH = 100
IDLE_SWEEP_TASK = "stream-idle-sweep"


class StreamEvents(Protocol):
    """Told of a stream's changes (the real-time hub): a port, so this service never imports it."""

    async def message_created(self, message: dict[str, Any]) -> None: ...

    async def message_updated(self, message: dict[str, Any]) -> None: ...

    async def stream_deltas(
        self, conversation_id: uuid.UUID, message_id: uuid.UUID, seq: int, index: int,
        texts: list[str],
    ) -> None: ...


def may_stream(principal: Principal) -> bool:
    """Whether `principal` may open streams: API keys and agent credentials (a user's browser
    token may not)."""
    return principal.conversation_id is None or principal.agent


def may_append(principal: Principal, live: LiveStream) -> bool:
    """Whether `principal` may append to, complete or abort `live`: its author."""
    return may_stream(principal) and principal.name == live.author


def forbidden(detail: str) -> Problem:
    return Problem(403, detail, code="forbidden")


@dataclass
class Gate:
    """Appends to one stream waiting, in arrival order, while it is read from Postgres."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class StreamService:
    def __init__(
        self, pool: asyncpg.Pool, teams: ConversationTeams, settings: StreamSettings,
        events: StreamEvents, committer: StreamCommitter | None = None,
    ) -> None:
        self.pool = pool
        self.teams = teams
        self.settings = settings
        self.events = events
        self.committer = committer or StreamCommitter(pool, settings.commit_interval)
        self.live: dict[uuid.UUID, LiveStream] = {}
        self._gates: dict[uuid.UUID, Gate] = {}

    # --- open ------------------------------------------------------------------------------------

    async def open(self, principal: Principal, new: NewMessage, *, checked: bool = False) -> Posted:
        """Store `new` as an open stream (the caller validated it; `checked`: and its access)."""
        if not may_stream(principal):
            raise forbidden("only API keys and agent credentials may stream messages")
        if len(new.content.encode()) > self.settings.max_text_bytes:
            raise ValidationProblem(
                [("content", f"must be at most {self.settings.max_text_bytes} bytes")], 413)
        if not checked:
            await self.teams.check(principal, new.conversation_id)
        async with self.pool.acquire() as conn:
            existing = await self._stored(conn, new)
            if existing is not None:
                return replay(new, existing)
            try:
                async with conn.transaction():
                    row = await store.insert_stream(conn, new,
                                                    self.settings.max_open_per_conversation)
                    if row is not None:
                        await outbox.enqueue_message_event(conn, MESSAGE_CREATED, row)
            except store.TooManyOpen as exc:
                raise Problem(409, str(exc), code="too_many_streams", invalid_params=[
                    ("stream", f"at most {exc.limit} open streams per conversation")]) from None
            except store.UnknownRun as exc:
                raise ValidationProblem([("run_id", str(exc))]) from None
            except asyncpg.UniqueViolationError:  # a concurrent open with this client_id won
                return replay(new, await self._stored(conn, new))
        if row is None:
            raise not_found()
        self.live[row["id"]] = LiveStream.opened(row, self._bucket())
        message = message_json(row)
        await self.events.message_created(message)
        return Posted(message, created=True)

    @staticmethod
    async def _stored(conn: Any, new: NewMessage) -> Any:
        """The message already stored under `new`'s client_id (None without one)."""
        if new.client_id is None:
            return None
        return await message_store.get_by_client_id(conn, new.conversation_id, new.client_id)

    # --- append ----------------------------------------------------------------------------------

    async def append(
        self, principal: Principal, conversation_id: uuid.UUID, message_id: uuid.UUID,
        deltas: list[Delta], *, checked: bool = False,
    ) -> int:
        """Append (all or nothing); the stream's durable next index once they are committed."""
        if not checked:
            await self.teams.check(principal, conversation_id)
        live, fresh = await self._admit(principal, conversation_id, message_id, deltas)
        if fresh:
            first = live.next_index - len(fresh)
            self.committer.mark(live)
            await self.events.stream_deltas(conversation_id, message_id, live.seq, first, fresh)
        try:
            await live.durable(max((d.index for d in deltas), default=-1) + 1)
        except BaseException:
            self._forget(live)
            raise
        return live.committed

    def validate_deltas(self, body: dict[str, Any]) -> list[Delta]:
        """The `deltas` of a REST batch: [{"index", "text"}, ...] in index order."""
        items = body.get("deltas")
        limit = self._batch_limit()
        if not isinstance(items, list) or not items:
            raise ValidationProblem([("deltas", "must be a non-empty array")])
        if len(items) > limit:
            raise ValidationProblem([("deltas", f"at most {limit} deltas per request")])
        return [self.validate_delta(item, f"deltas[{i}].") for i, item in enumerate(items)]

    def validate_delta(self, item: Any, prefix: str = "") -> Delta:
        if not isinstance(item, dict):
            raise ValidationProblem([(prefix.rstrip(".") or "body", "must be an object")])
        fields = Fields(item, prefix)
        index = fields.integer("index", required=True, minimum=0, maximum=2**31 - 1)
        text = fields.string("text", required=True, nullable=False,
                             max_length=self.settings.max_text_bytes)
        fields.raise_if_invalid()
        return Delta(index, text)

    def _batch_limit(self) -> int:
        rate = self.settings.deltas_per_second
        return max(int(rate), 1) if rate > 0 else 10_000

    async def _admit(
        self, principal: Principal, conversation_id: uuid.UUID, message_id: uuid.UUID,
        deltas: list[Delta],
    ) -> tuple[LiveStream, list[str]]:
        """Check `deltas` and apply them to this instance's state of the stream, in the order
        the appends arrived: while the stream is read from Postgres (its first append here, or
        after a failed commit), later appends queue behind the gate, in order."""
        live = self.live.get(message_id)
        if live is not None and live.broken is None and message_id not in self._gates:
            return live, self._apply(principal, conversation_id, live, deltas)
        gate = self._gates.setdefault(message_id, Gate())
        gate.users += 1
        try:
            async with gate.lock:
                live = self.live.get(message_id)
                if live is None or live.broken is not None:
                    live = self.live[message_id] = await self._read(conversation_id, message_id)
                return live, self._apply(principal, conversation_id, live, deltas)
        finally:
            gate.users -= 1
            if not gate.users:
                del self._gates[message_id]

    def _apply(
        self, principal: Principal, conversation_id: uuid.UUID, live: LiveStream,
        deltas: list[Delta],
    ) -> list[str]:
        """The texts applied (after the idempotent repeats), or a 403/404/409/413/429."""
        if live.conversation_id != conversation_id:
            raise not_found("message")
        if not may_append(principal, live):
            raise forbidden("only the stream's author may append to it")
        fresh = live.plan(deltas, self.settings.max_text_bytes)
        if fresh and live.bucket is not None:
            wait = live.bucket.take(time.monotonic(), len(fresh))
            if wait:
                raise Problem(429, f"over {self.settings.deltas_per_second:g} deltas per second",
                              code="rate_limited", headers={"Retry-After": str(int(wait) + 1)})
        live.apply(fresh)
        return fresh

    async def _read(self, conversation_id: uuid.UUID, message_id: uuid.UUID) -> LiveStream:
        async with self.pool.acquire() as conn:
            row = await store.get_stream(conn, conversation_id, message_id)
        if row is None:
            raise not_found("message")
        if row["stream_state"] != StreamState.OPEN:
            check_transition(row["stream_state"], StreamState.COMPLETE, row["stream_next_index"])
        return LiveStream.from_row(row, self._bucket())

    def _bucket(self) -> TokenBucket | None:
        rate = self.settings.deltas_per_second
        return TokenBucket(rate, max(rate, 1.0)) if rate > 0 else None

    def _forget(self, live: LiveStream) -> None:
        if self.live.get(live.message_id) is live:
            del self.live[live.message_id]

    # --- close -----------------------------------------------------------------------------------

    def validate_complete(self, body: dict[str, Any]) -> dict[str, Any]:
        fields = Fields(body)
        fields.reject_unknown(COMPLETE_FIELDS)
        content = fields.string("content", nullable=False)
        status = fields.choice("status", MessageStatus)
        metadata = fields.obj("metadata")
        fields.raise_if_invalid()
        if isinstance(content, str) and len(content.encode()) > self.settings.max_text_bytes:
            raise ValidationProblem(
                [("content", f"must be at most {self.settings.max_text_bytes} bytes")], 413)
        return {"content": content, "status": str(status) if status else None,
                "metadata": metadata}

    @staticmethod
    def validate_abort(body: dict[str, Any]) -> str | None:
        fields = Fields(body)
        fields.reject_unknown(("reason",))
        reason = fields.string("reason", max_length=REASON_MAX, min_length=1)
        fields.raise_if_invalid()
        return reason

    async def complete(
        self, principal: Principal, conversation_id: uuid.UUID, message_id: uuid.UUID,
        changes: dict[str, Any], *, checked: bool = False,
    ) -> dict[str, Any]:
        return await self._close(principal, conversation_id, message_id, StreamState.COMPLETE,
                                 None, changes, checked)

    async def abort(
        self, principal: Principal, conversation_id: uuid.UUID, message_id: uuid.UUID,
        reason: str | None, *, checked: bool = False,
    ) -> dict[str, Any]:
        return await self._close(principal, conversation_id, message_id, StreamState.ABORTED,
                                 reason, {}, checked)

    async def _close(
        self, principal: Principal, conversation_id: uuid.UUID, message_id: uuid.UUID,
        state: StreamState, reason: str | None, changes: dict[str, Any], checked: bool,
    ) -> dict[str, Any]:
        if not checked:
            await self.teams.check(principal, conversation_id)
        live, _ = await self._admit(principal, conversation_id, message_id, [])
        try:
            await live.durable(live.next_index)  # this instance's deltas first
        finally:
            self._forget(live)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.close_stream(
                conn, conversation_id, message_id, state, reason, changes.get("content"),
                changes.get("status"), changes.get("metadata"))
            if row is None:
                current = await store.get_stream(conn, conversation_id, message_id)
                if current is None:
                    raise not_found("message")
                check_transition(current["stream_state"], state, current["stream_next_index"])
                raise StreamConflict("the stream changed meanwhile; retry", None)
            await outbox.enqueue_message_event(conn, MESSAGE_COMPLETED, row)
        message = message_json(row)
        await self.events.message_updated(message)
        return message

    # --- idle streams ----------------------------------------------------------------------------

    async def abort_idle(self) -> int:
        """Abort every stream idle for `idle_timeout` (whichever instance wrote it); how many."""
        total = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await store.abort_idle(conn, self.settings.idle_timeout, IDLE_BATCH)
                for row in sorted(rows, key=lambda r: (r["conversation_id"], r["seq"])):
                    await outbox.enqueue_message_event(conn, MESSAGE_COMPLETED, row)
            for row in rows:
                live = self.live.pop(row["id"], None)
                if live is not None:
                    live.fail(StreamConflict("the stream is aborted", row["stream_next_index"],
                                             name="message_id"))
                await self.events.message_updated(message_json(row))
            total += len(rows)
            if len(rows) < IDLE_BATCH:
                break
        self._forget_idle()
        return total

    def _forget_idle(self) -> None:
        """Drop local state of streams this instance has not appended to for `idle_timeout`."""
        horizon = time.monotonic() - self.settings.idle_timeout
        for live in [v for v in self.live.values() if v.touched < horizon and not v.waiters]:
            self._forget(live)

    async def sweep_loop(self) -> None:
        """The supervised idle sweep: every quarter of `idle_timeout` (at most every 5 s)."""
        interval = min(max(self.settings.idle_timeout / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(interval)
            try:
                aborted = await self.abort_idle()
            except TRANSIENT_ERRORS as exc:
                log.warning("the idle stream sweep failed: %r", exc)
                continue
            if aborted:
                log.info("aborted %d idle streams", aborted)

    async def close(self) -> None:
        await self.committer.close()

