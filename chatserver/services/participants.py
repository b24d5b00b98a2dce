"""Participant rules: who is in a conversation, who may manage them, read horizons, and which
participant a credential writes as (its `Seat`).

API keys manage participants; tokens read them and mark their own horizon. Joins, leaves and
horizon moves are told to the `ParticipantEvents` port (the hub) after their commit; joins and
leaves also become webhook events when the conversation's `config.participant_events` is true.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from chatserver.auth.keys import Principal
from chatserver.models import (
    PARTICIPANT_JOINED,
    PARTICIPANT_LEFT,
    AuthorKind,
    MessageType,
    ParticipantKind,
    ParticipantRole,
    conversation_json,
    message_json,
    participant_json,
)
from chatserver.problems import Problem, ValidationProblem, not_found, unauthorized
from chatserver.services import cursors
from chatserver.services.conversations import ConversationService
from chatserver.store import participants as store
from chatserver.validation import Fields
from chatserver.webhooks import outbox

PARTICIPANT_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
PARTICIPANT_ID_REASON = "must be 1 to 128 URL-safe characters (A-Z a-z 0-9 . _ ~ -)"
PUT_FIELDS = ("kind", "name", "role", "metadata")
NAME_MAX = 200
CLOSED = "closed"  # config.participants: tokens only for participants created by an API key


def check_participant_id(text: str, name: str = "participant_id") -> str:
    if not isinstance(text, str) or PARTICIPANT_ID.fullmatch(text) is None:
        raise ValidationProblem([(name, PARTICIPANT_ID_REASON)])
    return text


@dataclass
class Seat:
    """The participant a credential writes as in one conversation. A socket keeps its seat; the
    credential re-check refreshes `role` and `name` and closes the socket once it is removed."""

    id: str
    kind: str
    name: str
    role: str

    @classmethod
    def of(cls, row: Any) -> Seat:
        return cls(row["id"], row["kind"], row["name"], row["role"])

    @property
    def observer(self) -> bool:
        return self.role == ParticipantRole.OBSERVER


@dataclass(frozen=True)
class Author:
    id: str
    kind: str
    name: str


def author_for(principal: Principal, seat: Seat | None, message_type: str) -> Author:
    """Who a message is by, decided by the server from the credential, never by the client."""
    if seat is not None:
        author = Author(seat.id, seat.kind, seat.name)
    else:
        author = Author(principal.name, str(AuthorKind.INTEGRATION), principal.name)
    if message_type == MessageType.SYSTEM:
        return Author(author.id, str(AuthorKind.SYSTEM), author.name)
    return author


class ParticipantEvents(Protocol):
    """Told after each commit (the real-time hub): a port, so this service never imports it."""

    async def participant_joined(self, conversation_id: uuid.UUID, participant: dict[str, Any]
                                 ) -> None: ...

    async def participant_left(self, conversation_id: uuid.UUID, participant: dict[str, Any]
                               ) -> None: ...

    async def read_marked(self, conversation_id: uuid.UUID, participant_id: str, seq: int
                          ) -> None: ...


class ParticipantService:
    def __init__(
        self, pool: asyncpg.Pool, conversations: ConversationService, events: ParticipantEvents
    ) -> None:
        self.pool = pool
        self.conversations = conversations
        self.events = events

    async def current(self, principal: Principal, conversation_id: uuid.UUID
                      ) -> list[dict[str, Any]]:
        await self.conversations.get_row(principal, conversation_id)
        async with self.pool.acquire() as conn:
            return [participant_json(r) for r in await store.list_participants(conn,
                                                                                conversation_id)]

    async def put(
        self, principal: Principal, conversation_id: uuid.UUID, participant_id: str,
        body: dict[str, Any],
    ) -> tuple[dict[str, Any], bool]:
        """Create or update; the participant and whether it was created."""
        _manager_only(principal)
        check_participant_id(participant_id)
        fields = Fields(body)
        fields.reject_unknown(PUT_FIELDS)
        kind = fields.choice("kind", ParticipantKind, default=ParticipantKind.USER)
        name = fields.string("name", default=participant_id, nullable=False, min_length=1,
                             max_length=NAME_MAX)
        role = fields.choice("role", ParticipantRole, default=ParticipantRole.MEMBER)
        metadata = fields.obj("metadata", default={})
        fields.raise_if_invalid()
        conversation = await self.conversations.get_row(principal, conversation_id)
        row, created = await self._write(conversation, participant_id, str(kind), name,
                                         str(role), metadata)
        return participant_json(row), created

    async def delete(
        self, principal: Principal, conversation_id: uuid.UUID, participant_id: str
    ) -> None:
        _manager_only(principal)
        check_participant_id(participant_id)
        conversation = await self.conversations.get_row(principal, conversation_id)
        async with self.pool.acquire() as conn, conn.transaction():
            await _lock_for_events(conn, conversation)
            row = await store.remove_participant(conn, conversation_id, participant_id)
            if row is None:
                raise not_found("participant")
            await outbox.enqueue_participant_event(conn, PARTICIPANT_LEFT, row,
                                                   to_callback=_events_on(conversation))
        await self.events.participant_left(conversation_id, participant_json(row))

    async def mark_read(
        self, principal: Principal, conversation_id: uuid.UUID, participant_id: str, seq: Any,
    ) -> dict[str, Any]:
        """Move the horizon forward to `seq` (a lower one is ignored); the participant."""
        check_participant_id(participant_id)
        if principal.is_token and principal.participant != participant_id:
            raise not_found("participant")
        fields = Fields({"seq": seq})
        seq = fields.integer("seq", required=True, minimum=0)
        fields.raise_if_invalid()
        principal.check_conversation(conversation_id)
        async with self.pool.acquire() as conn:
            row = await store.mark_read(conn, conversation_id, participant_id, seq,
                                        principal.team_id)
        if row is None:
            raise not_found("participant")
        if seq > row["last_seq"]:
            raise ValidationProblem([("seq", f"is above the last seq ({row['last_seq']})")])
        participant = participant_json(row)
        if row["moved"] is not None:
            participant["last_read_seq"] = row["moved"]
            await self.events.read_marked(conversation_id, participant_id, row["moved"])
        return participant

    async def seat(self, principal: Principal, conversation_id: uuid.UUID) -> Seat | None:
        """The participant `principal` writes as here, or None for an API key that acts as no
        participant. A token's participant is created on first use when it was never seen (a
        token minted before participants existed) and refused with 401 once removed; an agent
        key's is created (or brought back) on first use."""
        if principal.participant is None:
            return None
        async with self.pool.acquire() as conn:
            row = await store.get_participant(conn, conversation_id, principal.participant)
        if row is not None and row["left_at"] is None:
            return Seat.of(row)
        if principal.is_token and row is not None:
            raise unauthorized("this token's participant was removed from the conversation")
        conversation = await self.conversations.get_row(principal, conversation_id)
        try:
            return Seat.of(await self.ensure(conversation, principal.participant,
                                             agent=principal.agent))
        except Problem as problem:
            if principal.is_token:  # a closed conversation, or a kind that does not match
                raise unauthorized(f"this token's participant cannot join: {problem.detail}"
                                   ) from None
            raise

    async def ensure(self, conversation: Any, participant_id: str, *, agent: bool) -> Any:
        """The current participant; when missing or removed, (re)created as a member (a user, or
        an agent) unless the conversation is closed (`config.participants = "closed"`: 404).
        An agent credential for a participant of another kind, or the reverse, is 409."""
        kind = str(ParticipantKind.AGENT if agent else ParticipantKind.USER)
        if conversation["config"].get("participants") == CLOSED:
            async with self.pool.acquire() as conn:
                row = await store.get_participant(conn, conversation["id"], participant_id)
            if row is None or row["left_at"] is not None:
                raise not_found("participant")
        else:
            row, _ = await self._write(conversation, participant_id, kind, participant_id,
                                       str(ParticipantRole.MEMBER), {}, keep_current=True)
        if row["kind"] != kind and ParticipantKind.AGENT in (kind, row["kind"]):
            raise Problem(409, f"participant {participant_id} is of kind {row['kind']}",
                          code="conflict", invalid_params=[("kind", f"is {row['kind']}")])
        return row

    async def _write(
        self, conversation: Any, participant_id: str, kind: str, name: str, role: str,
        metadata: dict[str, Any], *, keep_current: bool = False,
    ) -> tuple[Any, bool]:
        """Create, update or bring back a participant (`keep_current`: leave a current one as
        it is); the row and whether it joined now. A join is a webhook event in the same
        transaction and, after the commit, a frame."""
        conversation_id = conversation["id"]
        async with self.pool.acquire() as conn, conn.transaction():
            await _lock_for_events(conn, conversation)
            current = await store.get_participant(conn, conversation_id, participant_id,
                                                  lock=True)
            joins = current is None or current["left_at"] is not None
            if keep_current and not joins:
                return current, False
            row = await store.upsert_participant(conn, conversation_id, participant_id, kind,
                                                 name, role, metadata)
            if row is None:  # unchanged (also: written by a concurrent join just now)
                row = await store.get_participant(conn, conversation_id, participant_id)
            if joins:
                await outbox.enqueue_participant_event(conn, PARTICIPANT_JOINED, row,
                                                       to_callback=_events_on(conversation))
        if joins:
            await self.events.participant_joined(conversation_id, participant_json(row))
        return row, joins

    async def conversations_of(
        self, principal: Principal, participant_id: str, before: str | None, limit: int,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The participant's conversations, newest activity first, each with `unread_count` and
        `last_message`; and the next page's cursor (None on the last)."""
        _manager_only(principal)
        check_participant_id(participant_id, "participant")
        cursor = cursors.decode_cursor(before, lambda key: uuid.UUID(hex=key)) if before else None
        async with self.pool.acquire() as conn:
            rows = await store.list_conversations_of(conn, participant_id, principal.team_id,
                                                     cursor, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = (cursors.encode_cursor(rows[-1]["activity_at"], rows[-1]["id"].hex)
                       if more else None)
        return [_listed(r) for r in rows], next_cursor


def _manager_only(principal: Principal) -> None:
    if principal.is_token:
        raise Problem(403, "only an API key manages participants")


def _events_on(conversation: Any) -> bool:
    return conversation["config"].get("participant_events") is True


async def _lock_for_events(conn: Any, conversation: Any) -> None:
    """Joins and leaves are events ordered with the messages: lock as a message batch does."""
    await store.lock_conversation(conn, conversation["id"])


def _listed(row: Any) -> dict[str, Any]:
    item = conversation_json(row)
    item["unread_count"] = row["unread_count"]
    item["last_read_seq"] = row["last_read_seq"]
    last = None
    if row["m_id"] is not None:
        last = message_json({**{k: row[f"m_{k}"] for k in LAST_MESSAGE_FIELDS},
                             "conversation_id": row["id"]})
    item["last_message"] = last
    return item


LAST_MESSAGE_FIELDS = (
    "id", "seq", "client_id", "content", "content_type", "filename", "type", "channel", "status",
    "metadata", "created_by", "author_id", "author_kind", "author_name", "created_at",
    "updated_at", "stream_state", "stream_next_index", "stream_reason", "run_id", "action",
)
