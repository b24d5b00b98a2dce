"""Conversation rules: validating create/update bodies, team scoping, and the store calls."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from chatserver.auth.keys import Principal
from chatserver.models import (
    CONVERSATION_CREATED,
    CONVERSATION_UPDATED,
    Channel,
    InputDuringRun,
    Usecase,
    conversation_json,
)
from chatserver.problems import ValidationProblem, not_found
from chatserver.services import cursors
from chatserver.store import conversations as store
from chatserver.validation import Fields
from chatserver.webhooks import outbox
from chatserver.webhooks.endpoints import WebhookEndpoints, with_webhook_secret

CREATE_FIELDS = ("channel", "usecase", "config", "metadata", "team_id")
UPDATE_FIELDS = ("config", "metadata")
FIXED_FIELDS = ("usecase", "channel")




def check_callback_url(
    fields: Fields, config: dict[str, Any], webhooks: WebhookEndpoints | None = None
) -> None:
    url = config.get("callback_url")
    if url is None:
        return
    name = "callback_url"
    if not isinstance(url, str):
        fields.fail(name, "must be a string")
        return
    try:
        parts = urlsplit(url)
        absolute = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        absolute = False
    if not absolute:
        fields.fail(name, "must be an absolute http(s) URL")
    elif len(url) > 2048:
        fields.fail(name, "must be at most 2048 characters")
    elif (refused := (webhooks or WebhookEndpoints()).check_url(url)) is not None:
        fields.fail(name, refused)


def _validated_config(
    fields: Fields, usecase: Usecase | None, webhooks: WebhookEndpoints | None = None
) -> dict[str, Any]:
    config = dict(fields.obj("config", default={}))
    sub = Fields(config, prefix="config.")
    check_callback_url(sub, config, webhooks)
    if "workflow_id" in config:
        workflow_id = config["workflow_id"]
        if isinstance(workflow_id, bool) or not isinstance(workflow_id, str | int):
            sub.fail("workflow_id", "must be a string or an integer")
        elif isinstance(workflow_id, int):
            config["workflow_id"] = str(workflow_id)
        elif not workflow_id.strip():
            sub.fail("workflow_id", "must not be empty")
    if config.get("participants", "open") not in ("open", "closed"):
        sub.fail("participants", "must be open or closed")
    if not isinstance(config.get("participant_events", False), bool):
        sub.fail("participant_events", "must be true or false")
    if config.get("on_input_during_run", InputDuringRun.ALLOW) not in set(InputDuringRun):
        sub.fail("on_input_during_run", "must be one of allow, reject, interrupt, enqueue")
    if usecase is Usecase.WORKFLOW_EXECUTION and "workflow_id" not in config:
        sub.fail("workflow_id", "is required for usecase WORKFLOW_EXECUTION")
    fields.errors.extend(sub.errors)
    return config


def _team_for_create(fields: Fields, principal: Principal) -> int | None:
    team_id = fields.integer("team_id")
    if principal.team_id is not None:
        if team_id is not None and team_id != principal.team_id:
            fields.fail("team_id", "differs from the API key's team")
        return principal.team_id
    return team_id


def encode_cursor(row: Any) -> str:
    return cursors.encode_cursor(row["created_at"], row["id"].hex)


def decode_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    return cursors.decode_cursor(text, lambda key: uuid.UUID(hex=key))


class ConversationService:
    def __init__(self, pool: asyncpg.Pool, webhooks: WebhookEndpoints | None = None) -> None:
        self.pool = pool
        self.webhooks = webhooks or WebhookEndpoints()

    async def create(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        if principal.conversation_id is not None:
            raise not_found()
        fields = Fields(body)
        fields.reject_unknown(CREATE_FIELDS)
        channel = fields.choice("channel", Channel, default=Channel.API)
        if not fields.has("channel"):
            fields.fail("channel", "is required (API)")
        usecase = fields.choice("usecase", Usecase, default=Usecase.DEFAULT)
        config = _validated_config(fields, usecase, self.webhooks)
        metadata = dict(fields.obj("metadata", default={}))
        team_id = _team_for_create(fields, principal)
        fields.raise_if_invalid()
        if usecase is Usecase.WORKFLOW_EXECUTION:
            metadata["workflow_id"] = config["workflow_id"]
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.create_conversation(
                conn, str(channel), str(usecase), config, metadata, team_id
            )
            secret = await self.webhooks.sync(conn, row["id"], config)
            await outbox.enqueue_conversation_event(conn, CONVERSATION_CREATED, row)
        return with_webhook_secret(conversation_json(row), secret)

    async def get_row(self, principal: Principal, conversation_id: uuid.UUID) -> Any:
        principal.check_conversation(conversation_id)
        async with self.pool.acquire() as conn:
            row = await store.get_conversation(conn, conversation_id, principal.team_id)
        if row is None:
            raise not_found()
        return row

    async def get(self, principal: Principal, conversation_id: uuid.UUID) -> dict[str, Any]:
        return conversation_json(await self.get_row(principal, conversation_id))

    async def list(
        self, principal: Principal, before: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page, newest first, and the cursor of the next page (None on the last)."""
        if principal.conversation_id is not None:
            raise not_found()
        cursor = decode_cursor(before) if before else None
        async with self.pool.acquire() as conn:
            rows = await store.list_conversations(conn, principal.team_id, cursor, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]) if more else None
        return [conversation_json(r) for r in rows], next_cursor

    async def update(
        self, principal: Principal, conversation_id: uuid.UUID, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Apply `config` and `metadata` as top-level JSON merge patches (null deletes a key)."""
        if principal.conversation_id is not None:
            raise not_found()
        fields = Fields(body)
        fields.reject_unknown(UPDATE_FIELDS + FIXED_FIELDS)
        for fixed in FIXED_FIELDS:
            if fields.has(fixed):
                fields.fail(fixed, "is fixed after create")
        config_patch = fields.obj("config")
        metadata_patch = fields.obj("metadata")
        fields.raise_if_invalid()
        if config_patch is None and metadata_patch is None:
            raise ValidationProblem([("body", "give config and/or metadata to change")])
        async with self.pool.acquire() as conn, conn.transaction():
            current = await store.get_conversation_for_update(
                conn, conversation_id, principal.team_id
            )
            if current is None:
                raise not_found()
            usecase = Usecase(current["usecase"])
            check = Fields({"config": merge_patch(current["config"], config_patch)})
            config = _validated_config(check, usecase, self.webhooks)
            check.raise_if_invalid()
            metadata = merge_patch(current["metadata"], metadata_patch)
            if usecase is Usecase.WORKFLOW_EXECUTION:
                metadata["workflow_id"] = config["workflow_id"]
            row = await store.update_conversation(conn, conversation_id, config, metadata)
            secret = None if config_patch is None else await self.webhooks.sync(
                conn, conversation_id, config, reenable="callback_url" in config_patch)
            await outbox.enqueue_conversation_event(conn, CONVERSATION_UPDATED, row)
        return with_webhook_secret(conversation_json(row), secret)


def merge_patch(current: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    """RFC 7396 at the top level: keys in `patch` replace, keys set to null are removed."""
    merged = dict(current)
    for key, value in (patch or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
