"""Message rules: validation, idempotent posting with ack-after-commit, history pages, updates.

New messages are written by group commit (`chatserver.services.groupcommit`): concurrent posts
share one transaction (seq + row + outbox row for each), and each caller is answered after that
commit. Whatever is published about a message happens after its commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from chatserver.auth.keys import Principal
from chatserver.config import MessageSettings, PerformanceSettings, RunSettings
from chatserver.models import (
    MEDIA_CONTENT_TYPES,
    MESSAGE_UPDATED,
    ContentType,
    InputDuringRun,
    MessageStatus,
    MessageType,
    message_json,
)
from chatserver.problems import Problem, ValidationProblem, not_found
from chatserver.services import history
from chatserver.services.actions import parse_action
from chatserver.services.conversations import ConversationService
from chatserver.services.groupcommit import GroupCommitter
from chatserver.services.participants import Seat, author_for
from chatserver.store import messages as store
from chatserver.store.messages import NewMessage
from chatserver.validation import Fields, basename_problem, is_utf8, parse_hex_id
from chatserver.webhooks import outbox

POST_FIELDS = ("content", "content_type", "filename", "status", "metadata", "client_id", "stream",
               "run_id", "action")
PATCH_FIELDS = ("status", "metadata")
CLIENT_ID_MAX = 200
TEAMS_CACHED = 100_000
ABSENT = object()  # a stored row without `input_policy` (not from a batch's insert)


@dataclass(frozen=True)
class Posted:
    """The stored message, and whether this call created it (False for an idempotent replay)."""

    message: dict[str, Any]
    created: bool


@dataclass(frozen=True)
class Page:
    messages: list[dict[str, Any]]
    more: bool


def _client_id(fields: Fields, header_key: str | None) -> str | None:
    client_id = fields.string("client_id", max_length=CLIENT_ID_MAX, min_length=1)
    if header_key is not None:
        if len(header_key) > CLIENT_ID_MAX or not header_key:
            fields.fail("Idempotency-Key", f"must be 1 to {CLIENT_ID_MAX} characters")
        elif not is_utf8(header_key):
            fields.fail("Idempotency-Key", "must be UTF-8 text")
        elif client_id is not None and client_id != header_key:
            fields.fail("client_id", "differs from the Idempotency-Key header")
        client_id = client_id or header_key
    return client_id


def replay(new: NewMessage, existing: Any) -> Posted:
    """The stored message for a retry of `new` (same client_id); 422 if it differs."""
    if not new.same_request(existing):
        raise Problem(
            422, "client_id was already used for a different message in this conversation",
            title="Idempotency key reused", invalid_params=[("client_id", "already used")],
        )
    return Posted(message_json(existing), created=False)


class ConversationTeams:
    """Which team owns a conversation, remembered: a conversation never changes team and is never
    deleted, so a post skips the lookup after the first (the insert itself finds the row)."""

    def __init__(self, conversations: ConversationService, size: int = TEAMS_CACHED) -> None:
        self.conversations = conversations
        self.size = size
        self.teams: dict[uuid.UUID, int | None] = {}

    async def check(self, principal: Principal, conversation_id: uuid.UUID) -> None:
        """404 unless `principal` may post to the conversation (as ConversationService.get_row)."""
        principal.check_conversation(conversation_id)
        if conversation_id not in self.teams:
            row = await self.conversations.get_row(principal, conversation_id)
            if len(self.teams) >= self.size:
                del self.teams[next(iter(self.teams))]
            self.teams[conversation_id] = row["team_id"]
        elif principal.team_id is not None and self.teams[conversation_id] != principal.team_id:
            raise not_found()


class MessageEvents(Protocol):
    """Told after each commit (the real-time hub): a port, so this service never imports it."""

    async def message_created(self, message: dict[str, Any]) -> None: ...

    async def message_updated(self, message: dict[str, Any]) -> None: ...


class RunLinks(Protocol):
    """The run service as posting needs it: messages of a run, and the input policy."""

    settings: RunSettings

    async def store_linked(self, new: NewMessage) -> tuple[Any, bool]: ...

    async def before_input(self, new: NewMessage) -> InputDuringRun: ...

    async def after_input(self, policy: InputDuringRun, message: dict[str, Any]) -> None: ...

    def input_policy_read(self, conversation_id: uuid.UUID, value: str | None) -> None: ...


def _run_link(
    fields: Fields, principal: Principal, runs: RunLinks | None
) -> tuple[uuid.UUID | None, dict[str, Any] | None]:
    """`run_id` and `action` of a new message (an action needs a run_id; user tokens ask
    nothing)."""
    run_id, action = None, None
    raw_run = fields.string("run_id")
    if raw_run is not None:
        try:
            run_id = parse_hex_id(raw_run, "run_id")
        except ValidationProblem as problem:
            fields.errors.extend(problem.invalid_params)
    if fields.has("action") and runs is not None:
        action, problems = parse_action(fields.data["action"], runs.settings)
        fields.errors.extend(problems)
        if raw_run is None:
            fields.fail("run_id", "is required with an action")
        if principal.is_token and not principal.agent:
            fields.fail("action", "only an agent or an API key may ask")
    return run_id, action


class MessageService:
    def __init__(
        self, pool: asyncpg.Pool, conversations: ConversationService, settings: MessageSettings,
        events: MessageEvents, performance: PerformanceSettings | None = None,
        runs: RunLinks | None = None,
    ) -> None:
        performance = performance or PerformanceSettings()
        self.pool = pool
        self.conversations = conversations
        self.settings = settings
        self.teams = ConversationTeams(conversations)
        self.committer = GroupCommitter(pool, max_batch=performance.group_commit_max_batch,
                                        in_flight=performance.group_commit_in_flight)
        self.events = events
        self.runs = runs

    def validate_new(
        self, principal: Principal, conversation_id: uuid.UUID, body: dict[str, Any],
        header_key: str | None = None, *, seat: Seat | None = None, type_field: str = "type",
    ) -> NewMessage:
        """The message `principal` (writing as `seat`) may post; `type_field` names the message
        type's field ("message_type" in a websocket frame, whose `type` is the frame's kind)."""
        fields = Fields(body)
        fields.reject_unknown((*POST_FIELDS, type_field))
        content = fields.string("content", required=True, nullable=False)
        if isinstance(content, str) and len(content.encode()) > self.settings.max_content_bytes:
            fields.fail("content", f"must be at most {self.settings.max_content_bytes} bytes")
        content_type = fields.choice("content_type", ContentType, default=ContentType.TEXT)
        filename = fields.string("filename", min_length=1)
        if isinstance(filename, str) and (problem := basename_problem(filename)):
            fields.fail("filename", problem)
        if content_type in MEDIA_CONTENT_TYPES and not filename:
            fields.fail("filename", f"is required for content_type {content_type}")
        default_type = MessageType.AGENT_OUTPUT if principal.agent else MessageType.USER_INPUT
        msg_type = fields.choice(type_field, MessageType, default=default_type)
        status = fields.choice("status", MessageStatus, default=MessageStatus.RECEIVED)
        metadata = fields.obj("metadata", default={})
        if seat is not None and seat.observer:
            fields.fail("type", "an observer may not send messages")
        if principal.agent:
            if msg_type is MessageType.USER_INPUT:
                fields.fail(type_field, "an agent may not post USER_INPUT")
        elif principal.is_token:
            self._check_token_fields(fields, type_field, msg_type, status, metadata)
        client_id = _client_id(fields, header_key)
        stream = fields.data.get("stream", False)
        if not isinstance(stream, bool):
            fields.fail("stream", "must be true or false")
        run_id, action = _run_link(fields, principal, self.runs)
        if action is not None and stream is True:
            fields.fail("action", "not on a streamed message")
        fields.raise_if_invalid()
        author = author_for(principal, seat, str(msg_type))
        return NewMessage(
            conversation_id=conversation_id, content=content, content_type=str(content_type),
            filename=filename, type=str(msg_type), status=str(status), metadata=metadata,
            client_id=client_id, created_by=principal.name, author_id=author.id,
            author_kind=author.kind, author_name=author.name, stream=stream is True,
            run_id=run_id, action=action,
        )

    def _check_token_fields(
        self, fields: Fields, type_field: str, msg_type: MessageType | None,
        status: MessageStatus | None, metadata: Any,
    ) -> None:
        """Fields the server owns: a browser token posts what a person types, nothing more."""
        if msg_type is not MessageType.USER_INPUT:
            fields.fail(type_field, "a browser token may only post USER_INPUT")
        if status is not MessageStatus.RECEIVED:
            fields.fail("status", "a browser token may only post status RECEIVED")
        allowed = self.settings.token_metadata_keys
        for key in metadata if isinstance(metadata, dict) else ():
            if key not in allowed:
                fields.fail(f"metadata.{key}", "not settable by a browser token "
                                               "(see [messages] token_metadata_keys)")

    async def post(self, principal: Principal, new: NewMessage) -> Posted:
        await self.teams.check(principal, new.conversation_id)
        return await self.store(new)

    async def store(self, new: NewMessage) -> Posted:
        """Store a message its author may post (the caller checked); seqs follow call order."""
        if self.runs is not None and new.run_id is not None:
            row, created = await self.runs.store_linked(new)  # it tells the hub
            return Posted(message_json(row), created=True) if created else replay(new, row)
        policy = await self.runs.before_input(new) if self.runs is not None else None
        stored = await self.committer.submit(new)
        if stored.row is None:
            raise not_found()
        if not stored.created:
            return replay(new, stored.row)
        read = stored.row.get("input_policy", ABSENT)  # read by a batch's insert
        if self.runs is not None and read is not ABSENT:
            self.runs.input_policy_read(new.conversation_id, read)
        message = message_json(stored.row)
        await self.events.message_created(message)
        if self.runs is not None and policy is not None:
            await self.runs.after_input(policy, message)
        return Posted(message, created=True)

    async def page(
        self, principal: Principal, conversation_id: uuid.UUID, *, before: int | None,
        after: int | None, limit: int, ascending: bool,
    ) -> Page:
        await self.conversations.get_row(principal, conversation_id)
        rows = await history.page(self.pool, conversation_id, before=before, after=after,
                                  limit=limit + 1, ascending=ascending)
        return Page([message_json(r) for r in rows[:limit]], more=len(rows) > limit)

    async def update(
        self, principal: Principal, conversation_id: uuid.UUID, message_id: uuid.UUID,
        body: dict[str, Any],
    ) -> dict[str, Any]:
        """PATCH status/metadata: any message for an API key, its own for an agent token."""
        if principal.is_token and not principal.agent:
            raise Problem(403, "only an agent or an API key may change a message")
        await self.conversations.get_row(principal, conversation_id)
        own = principal.participant if principal.is_token else None
        fields = Fields(body)
        fields.reject_unknown(PATCH_FIELDS)
        status = fields.choice("status", MessageStatus)
        metadata = fields.obj("metadata")
        fields.raise_if_invalid()
        if status is None and metadata is None:
            raise ValidationProblem([("body", "give status and/or metadata to change")])
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.update_message(
                conn, conversation_id, message_id, str(status) if status else None, metadata, own
            )
            if row is not None:
                await outbox.enqueue_message_event(conn, MESSAGE_UPDATED, row)
        if row is None:
            raise not_found("message")
        message = message_json(row)
        await self.events.message_updated(message)
        return message
