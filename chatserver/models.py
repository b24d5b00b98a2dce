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


class StreamState(StrEnum):
    """A streamed message's state (see `chatserver.services.streams` for the transitions)."""

    OPEN = "open"  # deltas may be appended
    COMPLETE = "complete"  # finished by its author
    ABORTED = "aborted"  # given up by its author, or by the server when idle


class ParticipantKind(StrEnum):
    USER = "user"  # a person
    AGENT = "agent"  # an AI agent or workflow answering
    OPERATOR = "operator"  # a person working for the service (watching, taking over)


class ParticipantRole(StrEnum):
    MEMBER = "member"  # reads and writes
    OBSERVER = "observer"  # reads only: no messages, no typing


class AuthorKind(StrEnum):
    """A message's `author.kind`: a participant's kind, or who else wrote it."""

    USER = "user"
    AGENT = "agent"
    OPERATOR = "operator"
    INTEGRATION = "integration"  # an API key that acts as no participant
    SYSTEM = "system"  # a SYSTEM message
class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    REQUIRES_ACTION = "requires_action"  # waiting for a person to answer an action
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class InputDuringRun(StrEnum):
    """`config.on_input_during_run`: what a user's message does while a run is active."""

    ALLOW = "allow"
    REJECT = "reject"
    INTERRUPT = "interrupt"
    ENQUEUE = "enqueue"


class ActionKind(StrEnum):
    CONFIRM = "confirm"
    CHOICE = "choice"
    FORM = "form"


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
    """A message as the API shows it; a streamed one also has `stream` (state, next_index and,
    once aborted, the reason)."""
    message: dict[str, Any] = {
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
        "author": author_json(row),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "run_id": row["run_id"].hex if row["run_id"] else None,
        "action": row["action"],
    }
    if row["stream_state"] is not None:
        message["stream"] = stream_json(row)
    return message


def run_json(row: Any) -> dict[str, Any]:
    def when(key: str) -> str | None:
        return iso(row[key]) if row[key] is not None else None

    return {
        "id": row["id"].hex,
        "conversation_id": row["conversation_id"].hex,
        "agent": row["agent"],
        "status": row["status"],
        "input_seq": row["input_seq"],
        "metadata": row["metadata"],
        "error": row["error"],
        "activity": row["activity"],
        "queued_behind": row["queued_behind"].hex if row["queued_behind"] else None,
        "cancel_requested_at": when("cancel_requested_at"),
        "seq": row["seq"],
        "version": row["version"],
        "created_by": row["created_by"],
        "created_at": iso(row["created_at"]),
        "started_at": when("started_at"),
        "ended_at": when("ended_at"),
        "updated_at": iso(row["updated_at"]),
    }


def stream_json(row: Any) -> dict[str, Any]:
    stream = {"state": row["stream_state"], "next_index": row["stream_next_index"]}
    if row["stream_reason"] is not None:
        stream["reason"] = row["stream_reason"]
    return stream


def author_json(row: Any) -> dict[str, Any]:
    """Who wrote a message. Messages stored before authors were recorded are rendered from
    created_by: kind "system" for SYSTEM messages, else "integration"."""
    if row["author_kind"] is None:
        kind = AuthorKind.SYSTEM if row["type"] == MessageType.SYSTEM else AuthorKind.INTEGRATION
        return {"id": row["created_by"], "kind": str(kind), "name": row["created_by"]}
    return {"id": row["author_id"], "kind": row["author_kind"], "name": row["author_name"]}


def participant_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "name": row["name"],
        "role": row["role"],
        "metadata": row["metadata"],
        "joined_at": iso(row["joined_at"]),
        "last_read_seq": row["last_read_seq"],
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
