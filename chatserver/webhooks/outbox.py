"""The transactional outbox: a delivery row written in the same transaction as its message.

A committed message therefore always has its webhook queued, even if the process dies right after
the commit. Conversations without `config.callback_url` get no row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from chatserver.models import iso, message_json, participant_json
from chatserver.store import webhooks as store

MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
MESSAGE_COMPLETED = "message.completed"  # a streamed message closed (complete or aborted)
WEBHOOK_TEST = "webhook.test"
PARTICIPANT_JOINED = "participant.joined"
PARTICIPANT_LEFT = "participant.left"
RUN_CREATED = "run.created"
RUN_UPDATED = "run.updated"
ACTION_ANSWERED = "action.answered"


def event(event_type: str, timestamp: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """A Standard Webhooks payload: type, timestamp, data."""
    return {"type": event_type, "timestamp": iso(timestamp), "data": data}


def message_event(event_type: str, message_row: Any) -> dict[str, Any]:
    message = message_json(message_row)
    stamp = message_row["created_at" if event_type == MESSAGE_CREATED else "updated_at"]
    return event(event_type, stamp, {
        "conversation_id": message["conversation_id"], "message": message,
    })


async def enqueue_message_event(conn: Any, event_type: str, message_row: Any) -> None:
    """Queue `event_type` for the message, inside the caller's transaction.

    The endpoint is looked up inside the transaction, after the conversation row is locked, so a
    callback_url set by a concurrent PATCH applies to every message committed after that PATCH.
    """
    await store.enqueue(
        conn, uuid.uuid4(), message_row["conversation_id"], event_type,
        message_event(event_type, message_row),
    )


async def enqueue_message_events(conn: Any, event_type: str, message_rows: list[Any]) -> None:
    """`enqueue_message_event` for a batch of messages, in one statement, in list order.

    Only inside the transaction of `store.messages.insert_messages`, which locked the conversations.
    Payloads are built only for conversations that have a callback_url.
    """
    if not message_rows:
        return
    hooked = await store.hooked_conversations(
        conn, list({r["conversation_id"] for r in message_rows}))
    message_rows = [r for r in message_rows if r["conversation_id"] in hooked]
    if message_rows:
        await store.enqueue_many(
            conn, [r["conversation_id"] for r in message_rows], event_type,
            [message_event(event_type, r) for r in message_rows],
        )


async def enqueue_participant_event(conn: Any, event_type: str, participant_row: Any) -> None:
    """Queue a join or leave inside the caller's transaction, which locked the conversation row
    first (as a message batch does, so the two never deadlock on the participant's row)."""
    participant = participant_json(participant_row)
    stamp = participant_row["joined_at"] if event_type == PARTICIPANT_JOINED else datetime.now(UTC)
    await store.enqueue(
        conn, uuid.uuid4(), participant_row["conversation_id"], event_type,
        event(event_type, stamp, {"conversation_id": participant_row["conversation_id"].hex,
                                  "participant": participant}),
    )
async def enqueue_event(
    conn: Any, conversation_id: uuid.UUID, event_type: str, timestamp: datetime,
    data: dict[str, Any],
) -> None:
    """Queue any event of a conversation (runs, actions) inside the caller's transaction, which
    has locked the conversation row: to its callback_url, in commit order with its messages."""
    await store.enqueue(conn, uuid.uuid4(), conversation_id, event_type,
                        event(event_type, timestamp, data))
