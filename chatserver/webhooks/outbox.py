"""The transactional outbox: delivery rows written in the same transaction as their event.

A committed change therefore always has its webhooks queued, even if the process dies right after
the commit. `enqueue_event` is the one call for any event of a conversation: it queues a row for
the conversation's callback endpoint (if it has a callback_url) and for each team endpoint whose
filter matches the type (`webhooks/events.py` lists the types).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from chatserver.models import (
    CONVERSATION_CREATED,
    MESSAGE_CREATED,
    PARTICIPANT_JOINED,
    conversation_json,
    iso,
    message_json,
    participant_json,
)
from chatserver.store import webhooks as store
from chatserver.webhooks.events import NOT_FOR_CALLBACKS, patterns


def event(event_type: str, timestamp: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """A Standard Webhooks payload: type, timestamp, data."""
    return {"type": event_type, "timestamp": iso(timestamp), "data": data}


async def enqueue_event(
    conn: Any, event_type: str, conversation_id: uuid.UUID, timestamp: datetime,
    data: dict[str, Any], *, to_callback: bool | None = None,
) -> None:
    """Queue `event_type` with `data` (conversation_id is added) for every endpoint it goes to,
    inside the caller's transaction: the team's endpoints whose filter matches, and the
    conversation's callback_url unless the type is not for callbacks (or `to_callback` says so).

    The endpoints are looked up inside the transaction, after the conversation row is locked, so
    an endpoint set by a concurrent write applies to every event committed after that write.
    """
    payload = event(event_type, timestamp, {"conversation_id": conversation_id.hex, **data})
    if to_callback is None:
        to_callback = event_type not in NOT_FOR_CALLBACKS
    await _enqueue(conn, event_type, conversation_id, payload, to_callback)


async def _enqueue(
    conn: Any, event_type: str, conversation_id: uuid.UUID, payload: dict[str, Any],
    to_callback: bool,
) -> None:
    await store.enqueue(conn, conversation_id, event_type, payload, patterns(event_type),
                        to_callback)


def message_event(event_type: str, message_row: Any) -> dict[str, Any]:
    message = message_json(message_row)
    stamp = message_row["created_at" if event_type == MESSAGE_CREATED else "updated_at"]
    return event(event_type, stamp, {
        "conversation_id": message["conversation_id"], "message": message,
    })


async def enqueue_message_event(conn: Any, event_type: str, message_row: Any) -> None:
    """`enqueue_event` for one message."""
    await _enqueue(conn, event_type, message_row["conversation_id"],
                   message_event(event_type, message_row), True)


async def enqueue_message_events(conn: Any, event_type: str, message_rows: list[Any]) -> None:
    """`enqueue_message_event` for a batch of messages, in one statement, in list order.

    Only inside the transaction of `store.messages.insert_messages`, which locked the conversations.
    Payloads are built only for conversations that have an endpoint for the event.
    """
    if not message_rows:
        return
    matching, to_callback = patterns(event_type), event_type not in NOT_FOR_CALLBACKS
    hooked = await store.hooked_conversations(
        conn, list({r["conversation_id"] for r in message_rows}), matching, to_callback)
    message_rows = [r for r in message_rows if r["conversation_id"] in hooked]
    if message_rows:
        await store.enqueue_many(
            conn, [r["conversation_id"] for r in message_rows], event_type,
            [message_event(event_type, r) for r in message_rows], matching, to_callback,
        )


async def enqueue_conversation_event(conn: Any, event_type: str, conversation_row: Any) -> None:
    """`conversation.created` / `conversation.updated`, in the conversation write's transaction."""
    stamp = conversation_row["created_at" if event_type == CONVERSATION_CREATED else "updated_at"]
    await enqueue_event(conn, event_type, conversation_row["id"], stamp,
                        {"conversation": conversation_json(conversation_row)})


async def enqueue_participant_event(
    conn: Any, event_type: str, participant_row: Any, *, to_callback: bool,
) -> None:
    """A join or leave, inside the caller's transaction, which locked the conversation row first
    (as a message batch does, so the two never deadlock on the participant's row). Team
    endpoints get it by their filter; the callback_url only when the conversation asked for
    participant events (`config.participant_events`)."""
    stamp = participant_row["joined_at"] if event_type == PARTICIPANT_JOINED else datetime.now(UTC)
    await enqueue_event(conn, event_type, participant_row["conversation_id"], stamp,
                        {"participant": participant_json(participant_row)},
                        to_callback=to_callback)
