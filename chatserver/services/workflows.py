"""Workflow conversations: an agent product running for a user, with a free-form configuration.

`WorkflowConversationManager` is the service: it validates arguments (a `ValidationProblem` naming
the field), scopes every read and write to its team, and calls the store. Each write is a single
SQL statement, so a failure never leaves a half-written row.

    manager = WorkflowConversationManager(pool, team_id=7)
    conversation = await manager.create_workflow_conversation(123, 456, {"running": True})
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from chatserver.config import ServerSettings
from chatserver.db.errors import UNAVAILABLE_ERRORS
from chatserver.models import iso
from chatserver.problems import NotFound, StoreUnavailable, ValidationProblem
from chatserver.services import cursors
from chatserver.store import workflow_conversations as store
from chatserver.validation import (
    BIGINT_MAX,
    DECIMAL_ID,
    ID_MIN,
    ID_REASON,
    Fields,
    check_json_value,
)

log = logging.getLogger(__name__)

FIELDS = ("agent_product_id", "user_id", "configuration")
WHAT = "workflow conversation"
# Kept for code written against the first release: both are the shared problem types now.
WorkflowStoreError = StoreUnavailable






@dataclass(frozen=True, slots=True)
class WorkflowConversation:
    """One stored workflow conversation."""

    id: int
    agent_product_id: int
    user_id: int | None
    team_id: int | None
    configuration: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WorkflowConversation:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def to_json(self) -> dict[str, Any]:
        """The API's JSON object: ids as numbers, timestamps as ISO 8601 UTC."""
        body = dataclasses.asdict(self)
        body["created_at"] = iso(self.created_at)
        body["updated_at"] = iso(self.updated_at)
        return body


@dataclass(frozen=True, slots=True)
class Page:
    """One keyset page, newest first, and the cursor of the next (None on the last page)."""

    items: list[WorkflowConversation]
    next_cursor: str | None




def check_id(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not ID_MIN <= value <= BIGINT_MAX:
        raise ValidationProblem([(name, ID_REASON)])
    return value


def _cursor_id(text: str) -> int:
    if DECIMAL_ID.fullmatch(text) is None or int(text) > BIGINT_MAX:
        raise ValueError(text)
    return int(text)


def _encode_cursor(conversation: WorkflowConversation) -> str:
    return cursors.encode_cursor(conversation.created_at, str(conversation.id))


def _json_object(fields: Fields, key: str, max_depth: int) -> dict[str, Any] | None:
    """`fields[key]` as a plain JSON object (what Postgres will store), or None after a fail."""
    value = fields.data.get(key)
    if not isinstance(value, dict):
        fields.fail(key, "must be a JSON object")
        return None
    try:
        value = orjson.loads(orjson.dumps(value))
    except orjson.JSONEncodeError as exc:
        fields.fail(key, f"must hold only JSON values ({exc})")
        return None
    fields.errors.extend(check_json_value(value, max_depth, fields.name(key)))
    return value


def _read_id(fields: Fields, key: str, *, nullable: bool) -> int | None:
    if fields.data.get(key) is None:
        if not nullable:
            fields.fail(key, "is required")
        return None
    value: int | None = fields.integer(key, minimum=ID_MIN)
    return value


class WorkflowConversationManager:
    """Create, read, change and list workflow conversations; `team_id` scopes them to one team.

    A manager with a team creates rows of that team and sees no other team's: their ids behave
    exactly like ids that do not exist. Without a team it sees every row and creates team-less ones.
    """

    def __init__(
        self, pool: asyncpg.Pool, team_id: int | None = None, *,
        max_json_depth: int = ServerSettings.max_json_depth,
    ) -> None:
        self.pool = pool
        self.team_id = team_id
        self.max_json_depth = max_json_depth

    async def create_workflow_conversation(
        self, agent_product_id: int, user_id: int | None = None,
        configuration: dict[str, Any] | None = None,
    ) -> WorkflowConversation:
        """Insert one; `configuration` defaults to `{}`."""
        return await self.create_from_body(
            {"agent_product_id": agent_product_id, "user_id": user_id,
             "configuration": configuration}
        )

    async def create_from_body(self, body: Mapping[str, Any]) -> WorkflowConversation:
        """Create from a JSON object (the REST body): unknown keys are errors too."""
        fields = Fields(dict(body))
        fields.reject_unknown(FIELDS)
        agent_product_id = _read_id(fields, "agent_product_id", nullable=False)
        user_id = _read_id(fields, "user_id", nullable=True)
        configuration: dict[str, Any] | None = {}
        if fields.data.get("configuration") is not None:
            configuration = _json_object(fields, "configuration", self.max_json_depth)
        fields.raise_if_invalid()
        assert agent_product_id is not None and configuration is not None  # else it raised
        async with self._connection("create the workflow conversation") as conn:
            row = await store.create_workflow_conversation(
                conn, agent_product_id, user_id, self.team_id, configuration
            )
        created = WorkflowConversation.from_row(row)
        log.info("created workflow conversation %s team=%s", created.id, self.team_id)
        return created

    async def get_workflow_conversation(
        self, workflow_conversation_id: int
    ) -> WorkflowConversation | None:
        conversation_id = check_id(workflow_conversation_id, "id")
        async with self._connection("read the workflow conversation") as conn:
            row = await store.get_workflow_conversation(conn, conversation_id, self.team_id)
        return None if row is None else WorkflowConversation.from_row(row)

    async def update_workflow_conversation(
        self, workflow_conversation_id: int, updates: Mapping[str, Any]
    ) -> WorkflowConversation:
        """Set the given fields (`configuration` is replaced whole); `{}` changes nothing."""
        conversation_id = check_id(workflow_conversation_id, "id")
        changes = self._changes(updates)
        if not changes:
            found = await self.get_workflow_conversation(conversation_id)
            if found is None:
                raise NotFound(WHAT)
            return found
        async with self._connection("update the workflow conversation") as conn:
            row = await store.update_workflow_conversation(
                conn, conversation_id, self.team_id, changes
            )
        if row is None:
            raise NotFound(WHAT)
        return WorkflowConversation.from_row(row)

    async def connect_to_workflow_conversation(
        self, workflow_conversation_id: int, connection_data: Mapping[str, Any]
    ) -> WorkflowConversation:
        """Merge `connection_data`'s top-level keys into the configuration, in one statement."""
        conversation_id = check_id(workflow_conversation_id, "id")
        fields = Fields({"connection_data": connection_data})
        data = _json_object(fields, "connection_data", self.max_json_depth)
        fields.raise_if_invalid()
        assert data is not None  # else it raised
        async with self._connection("connect to the workflow conversation") as conn:
            row = await store.merge_configuration(conn, conversation_id, self.team_id, data)
        if row is None:
            raise NotFound(WHAT)
        return WorkflowConversation.from_row(row)

    async def get_workflow_conversations_for_user(
        self, user_id: int
    ) -> list[WorkflowConversation]:
        """All of the user's, newest first."""
        return await self._for_user(check_id(user_id, "user_id"), False, None, None)

    async def get_running_workflow_conversations_for_user(
        self, user_id: int
    ) -> list[WorkflowConversation]:
        """The user's whose `configuration.running` is JSON `true` (not "true"), newest first."""
        return await self._for_user(check_id(user_id, "user_id"), True, None, None)

    async def page_for_user(
        self, user_id: int, *, running: bool = False, before: str | None = None, limit: int,
    ) -> Page:
        """One page of the user's (running) conversations after the cursor `before`."""
        user_id = check_id(user_id, "user_id")
        cursor = cursors.decode_cursor(before, _cursor_id) if before else None
        items = await self._for_user(user_id, running, cursor, limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return Page(items, _encode_cursor(items[-1]) if more else None)

    async def _for_user(
        self, user_id: int, running: bool, before: store.Cursor | None, limit: int | None
    ) -> list[WorkflowConversation]:
        async with self._connection("list the user's workflow conversations") as conn:
            rows = await store.list_for_user(
                conn, user_id, self.team_id, running=running, before=before, limit=limit
            )
        return [WorkflowConversation.from_row(r) for r in rows]

    def _changes(self, updates: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(updates, Mapping):
            raise ValidationProblem([("updates", "must be a JSON object")])
        fields = Fields(dict(updates))
        fields.reject_unknown(FIELDS)
        changes: dict[str, Any] = {}
        if fields.has("agent_product_id"):
            changes["agent_product_id"] = _read_id(fields, "agent_product_id", nullable=False)
        if fields.has("user_id"):
            changes["user_id"] = _read_id(fields, "user_id", nullable=True)
        if fields.has("configuration"):
            changes["configuration"] = _json_object(fields, "configuration", self.max_json_depth)
        fields.raise_if_invalid()
        return changes

    @asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; an unreachable database becomes a StoreUnavailable (503)."""
        try:
            async with self.pool.acquire() as conn:
                yield conn
        except UNAVAILABLE_ERRORS as exc:
            log.warning("could not %s: %s: %s", action, type(exc).__name__, exc)
            raise StoreUnavailable(action) from exc
