"""Questions to the human (actions): validating an action a message carries, and answering it.

An action is stored on its message (`action`: kind, prompt, options or schema, expires_at, and
once answered answer, answered_by, answered_at, answered_seq). The first valid answer wins: one
conditional UPDATE that changes the row only while it is unanswered and unexpired. Answers of one
conversation are also serialized by its row lock, which gives the answer its place on the
timeline (`answered_seq`, the conversation's last_seq then).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import jsonschema_rs

from chatserver.auth.keys import Principal
from chatserver.config import RunSettings
from chatserver.models import ACTION_ANSWERED, MESSAGE_UPDATED, ActionKind, iso, message_json
from chatserver.openapi.validate import schema_errors
from chatserver.problems import Problem, not_found
from chatserver.services.runs import RunService
from chatserver.store import runs as store
from chatserver.validation import Fields
from chatserver.webhooks import outbox

ACTION_FIELDS = ("kind", "prompt", "options", "schema", "expires_at")
ANSWER_FIELDS = ("option", "values", "client_id")
OPTION_ID_MAX = 100
OPTION_LABEL_MAX = 200
CONFIRM_OPTIONS = [{"id": "yes", "label": "Yes"}, {"id": "no", "label": "No"}]


class ActionEvents(Protocol):
    """Told after an answer commits (the real-time hub)."""

    async def message_updated(self, message: dict[str, Any]) -> None: ...

    async def action_answered(self, message: dict[str, Any]) -> None: ...


def answerer(principal: Principal) -> str:
    """Who is recorded as `answered_by`: the participant the credential acts as, else the key."""
    return principal.participant or principal.name


def _options(fields: Fields, kind: ActionKind, max_options: int) -> list[dict[str, str]] | None:
    raw = fields.data.get("options")
    if raw is None:
        if kind is ActionKind.CHOICE:
            fields.fail("options", "is required for kind choice")
        return CONFIRM_OPTIONS if kind is ActionKind.CONFIRM else None
    if kind is ActionKind.FORM:
        fields.fail("options", "not with kind form (give a schema)")
        return None
    if not isinstance(raw, list) or not 1 <= len(raw) <= max_options:
        fields.fail("options", f"must be a list of 1 to {max_options} options")
        return None
    options, seen = [], set()
    for i, option in enumerate(raw):
        sub = Fields(option if isinstance(option, dict) else {}, prefix=f"options[{i}].")
        if not isinstance(option, dict):
            fields.fail(f"options[{i}]", "must be an object {id, label}")
            continue
        sub.reject_unknown(("id", "label"))
        option_id = sub.string("id", required=True, nullable=False, min_length=1,
                               max_length=OPTION_ID_MAX)
        label = sub.string("label", required=True, nullable=False, min_length=1,
                           max_length=OPTION_LABEL_MAX)
        if option_id in seen:
            sub.fail("id", "is used by another option")
        seen.add(option_id)
        fields.errors.extend(sub.errors)
        options.append({"id": option_id, "label": label})
    return options


def _schema(fields: Fields, kind: ActionKind) -> dict[str, Any] | None:
    schema = fields.obj("schema")
    if kind is not ActionKind.FORM:
        if schema is not None:
            fields.fail("schema", "only with kind form")
        return None
    if schema is None:
        fields.fail("schema", "is required for kind form (a JSON schema of the values)")
        return None
    try:
        jsonschema_rs.validator_for(schema)
    except (ValueError, jsonschema_rs.ValidationError) as exc:
        fields.fail("schema", f"is not a valid JSON schema: {str(exc).splitlines()[0]}")
    return schema


def _expires_at(fields: Fields) -> str | None:
    text = fields.string("expires_at")
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        fields.fail("expires_at", "must be an ISO 8601 timestamp with a time zone")
        return None
    return iso(when)


def parse_action(raw: Any, settings: RunSettings) -> tuple[dict[str, Any] | None,
                                                          list[tuple[str, str]]]:
    """The action to store (answer fields null), and the problems naming `action.*` fields."""
    if not isinstance(raw, dict):
        return None, [("action", "must be a JSON object")]
    fields = Fields(raw, prefix="action.")
    fields.reject_unknown(ACTION_FIELDS)
    kind = fields.choice("kind", ActionKind)
    if not fields.has("kind"):
        fields.fail("kind", "is required (confirm, choice or form)")
    prompt = fields.string("prompt", required=True, nullable=False, min_length=1,
                           max_length=settings.action_prompt_max_chars)
    expires_at = _expires_at(fields)
    if kind is None:
        return None, fields.errors
    action = {"kind": str(kind), "prompt": prompt,
              "options": _options(fields, kind, settings.action_max_options),
              "schema": _schema(fields, kind), "expires_at": expires_at,
              "answer": None, "answered_by": None, "answered_at": None}
    return action, fields.errors


def _answer(action: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The answer to store, checked against the action; 400 naming the field."""
    fields = Fields(body)
    fields.reject_unknown(ANSWER_FIELDS)
    fields.string("client_id", max_length=200)
    if action["kind"] == ActionKind.FORM:
        values = fields.obj("values")
        if values is None:
            fields.fail("values", "is required: an object valid against the action's schema")
        else:
            validator = jsonschema_rs.validator_for(action["schema"])
            fields.errors += [(f"values.{name}" if name != "body" else "values", reason)
                              for name, reason in schema_errors(validator, values)]
        if fields.has("option"):
            fields.fail("option", "not for a form (give values)")
        fields.raise_if_invalid()
        return {"values": values}
    option = fields.string("option", required=True, nullable=False)
    ids = [o["id"] for o in action["options"]]
    if isinstance(option, str) and option not in ids:
        fields.fail("option", f"must be one of {', '.join(ids)}")
    if fields.has("values"):
        fields.fail("values", f"not for kind {action['kind']} (give an option)")
    fields.raise_if_invalid()
    return {"option": option}


def _refusal(action: dict[str, Any]) -> Problem:
    if action.get("answered_at") is not None:
        return Problem(409, f"this action was already answered by {action['answered_by']}",
                       code="already_answered")
    return Problem(409, f"this action expired at {action['expires_at']}", code="expired")


class ActionService:
    def __init__(self, pool: asyncpg.Pool, events: ActionEvents) -> None:
        self.pool = pool
        self.events = events

    async def answer(
        self, principal: Principal, conversation_id: uuid.UUID, message_id: uuid.UUID,
        body: dict[str, Any],
    ) -> dict[str, Any]:
        """Answer the action of a message: the first valid answer wins; later ones are 409
        already_answered, answers after expires_at 409 expired. The updated message."""
        async with self.pool.acquire() as conn, conn.transaction():
            timeline = await RunService.lock(conn, principal, conversation_id)
            message = await store.get_message(conn, conversation_id, message_id)
            if message is None or message["action"] is None:
                raise not_found("action")
            answer = _answer(message["action"], body)
            row = await store.answer_action(
                conn, conversation_id, message_id, answer, answerer(principal),
                iso(datetime.now(UTC)), timeline["last_seq"])
            if row is None:
                raise _refusal(message["action"])
            await outbox.enqueue_message_event(conn, MESSAGE_UPDATED, row)
            await outbox.enqueue_event(conn, ACTION_ANSWERED, conversation_id, row["updated_at"],
                                       {"conversation_id": conversation_id.hex,
                                        "message": message_json(row)})
        updated = message_json(row)
        await self.events.message_updated(updated)
        await self.events.action_answered(updated)
        return updated

