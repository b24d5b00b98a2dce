"""The domain's vocabulary: enums of allowed values, and records rendered as API JSON objects."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Channel(StrEnum):
    API = "API"


class Usecase(StrEnum):
    DEFAULT = "DEFAULT"
    WORKFLOW_EXECUTION = "WORKFLOW_EXECUTION"


class ContentType(StrEnum):
    TEXT = "TEXT"
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    AUDIO = "AUDIO"
    FILE = "FILE"


# Content types that point at a file and so need a filename.
MEDIA_CONTENT_TYPES = frozenset(
    {ContentType.IMAGE, ContentType.VIDEO, ContentType.AUDIO, ContentType.FILE}
)


class MessageType(StrEnum):
    USER_INPUT = "USER_INPUT"  # written by a person
    AGENT_OUTPUT = "AGENT_OUTPUT"  # written by an agent or workflow answering
    SYSTEM = "SYSTEM"  # notices from the platform (joined, workflow started, ...)


class MessageStatus(StrEnum):
    RECEIVED = "RECEIVED"  # stored, nobody has worked on it yet
    PROCESSING = "PROCESSING"  # a consumer is working on it
    PROCESSED = "PROCESSED"  # handled
    FAILED = "FAILED"  # handling failed


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC with a Z, as every API timestamp is rendered (asyncpg's are UTC already)."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="microseconds")[:-6] + "Z"  # drops "+00:00"


def conversation_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"].hex,
        "channel": row["channel"],
        "usecase": row["usecase"],
        "config": row["config"],
        "metadata": row["metadata"],
        "team_id": row["team_id"],
        "last_seq": row["last_seq"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def message_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"].hex,
        "conversation_id": row["conversation_id"].hex,
        "seq": row["seq"],
        "client_id": row["client_id"],
        "content": row["content"],
        "content_type": row["content_type"],
        "filename": row["filename"],
        "type": row["type"],
        "channel": row["channel"],
        "status": row["status"],
        "metadata": row["metadata"],
        "created_by": row["created_by"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


# --- webhook event types: the one list (webhooks/outbox.py queues them, the OpenAPI document's
# `webhooks` section and the README describe them) -------------------------------------------
MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
MESSAGE_COMPLETED = "message.completed"
CONVERSATION_CREATED = "conversation.created"
CONVERSATION_UPDATED = "conversation.updated"
PARTICIPANT_JOINED = "participant.joined"
PARTICIPANT_LEFT = "participant.left"
RUN_CREATED = "run.created"
RUN_UPDATED = "run.updated"
ACTION_ANSWERED = "action.answered"
WEBHOOK_TEST = "webhook.test"

# type -> what `data` holds (the OpenAPI document and the README describe each from this).
EVENT_TYPES: dict[str, str] = {
    MESSAGE_CREATED: "A message was stored: `conversation_id`, `message`.",
    MESSAGE_UPDATED: "A message changed (status, content, an answer): `conversation_id`, "
                     "`message`.",
    MESSAGE_COMPLETED: "A streamed message closed, complete or aborted: `conversation_id`, "
                       "`message`.",
    CONVERSATION_CREATED: "A conversation was created: `conversation_id`, `conversation`.",
    CONVERSATION_UPDATED: "A conversation's config or metadata changed: `conversation_id`, "
                          "`conversation`.",
    PARTICIPANT_JOINED: "A participant joined: `conversation_id`, `participant`.",
    PARTICIPANT_LEFT: "A participant left: `conversation_id`, `participant`.",
    RUN_CREATED: "An agent run was created: `conversation_id`, `run`.",
    RUN_UPDATED: "A run changed status or was asked to cancel: `conversation_id`, `run`.",
    ACTION_ANSWERED: "A question to the human was answered: `conversation_id`, `message`.",
    WEBHOOK_TEST: "Sent by a test request, whatever the filter: `conversation_id` (callback "
                  "endpoints) or `endpoint_id` (team endpoints).",
}
