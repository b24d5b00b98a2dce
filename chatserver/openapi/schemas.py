"""JSON Schemas of the API's objects and request bodies (OpenAPI 3.1 components)."""

from __future__ import annotations

from typing import Any

from chatserver.models import (
    EVENT_TYPES,
    WEBHOOK_TEST,
    ActionKind,
    AuthorKind,
    Channel,
    ContentType,
    MessageStatus,
    MessageType,
    ParticipantKind,
    ParticipantRole,
    RunStatus,
    StreamState,
    Usecase,
)

HEX_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
OBJECT = {"type": "object"}
EVENT_FILTER = {
    "type": "array",
    "minItems": 1,
    "description": "Event types this endpoint receives: exact types, `prefix.*` or `*`.",
    "items": {"type": "string", "enum": sorted(
        [t for t in EVENT_TYPES if t != WEBHOOK_TEST]
        + [p + ".*" for p in {t.split(".", 1)[0] for t in EVENT_TYPES}] + ["*"])},
}
POSITIVE_ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
# What a callback endpoint and a team endpoint both show of their state.
ENDPOINT_STATE: dict[str, Any] = {
    "url": {"type": "string"},
    "enabled": {"type": "boolean"},
    "disabled_at": NULLABLE_TIMESTAMP,
    "disabled_reason": {"type": ["string", "null"]},
    "failing_since": NULLABLE_TIMESTAMP,
    "previous_secret_expires_at": NULLABLE_TIMESTAMP,
    "pending_deliveries": {"type": "integer", "minimum": 0},
    "created_at": TIMESTAMP,
}
PARTICIPANT_ID = {"type": "string", "pattern": "^[A-Za-z0-9._~-]{1,128}$"}


def enum_of(enum: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [member.value for member in enum]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


ACTION_OPTION: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "label"],
    "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 100},
                   "label": {"type": "string", "minLength": 1, "maxLength": 200}},
}
# Inlined where a message body takes it (request validators are compiled one schema at a time).
ACTION_CREATE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "prompt"],
    "description": "A question to the human; needs run_id and moves the run to "
                   "requires_action.",
    "properties": {
        "kind": enum_of(ActionKind),
        "prompt": {"type": "string", "minLength": 1},
        "options": {"type": "array", "minItems": 1, "items": ACTION_OPTION,
                    "description": "choice (required) and confirm (default yes/no)."},
        "schema": {"type": "object", "description": "form: a JSON schema of the values."},
        "expires_at": TIMESTAMP,
    },
}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "request_id": {"type": "string"},
            "expected_index": {"type": "integer", "description": "On a stream conflict (409): "
                               "the delta index the stream expects next."},
            "invalid-params": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "reason"],
                    "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
        },
    },
    "ConversationCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["channel"],
        "properties": {
            "channel": enum_of(Channel),
            "usecase": enum_of(Usecase),
            "config": {
                "type": "object",
                "description": "Free-form; `workflow_id` (required for WORKFLOW_EXECUTION) and "
                "`callback_url` (absolute http(s) URL) have meaning.",
                "properties": {
                    "workflow_id": {"type": ["string", "integer"], "minLength": 1,
                                    "pattern": "\\S"},
                    "callback_url": {"type": "string", "maxLength": 2048,
                                     "pattern": "^https?://[^/?#@:\\s]"},
                },
            },
            "metadata": OBJECT,
            "team_id": {"type": ["integer", "null"], "minimum": -(2**63),
                        "maximum": 2**63 - 1},
        },
    },
    "ConversationCreated": {
        "type": "object",
        "required": ["id"],
        "properties": {"id": HEX_ID},
    },
    "ConversationPatch": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "description": "`config` and `metadata` are top-level JSON merge patches (null removes).",
        "properties": {"config": OBJECT, "metadata": OBJECT},
    },
    "Conversation": {
        "type": "object",
        "required": ["id", "channel", "usecase", "config", "metadata", "team_id", "last_seq",
                     "created_at", "updated_at"],
        "properties": {
            "id": HEX_ID,
            "channel": enum_of(Channel),
            "usecase": enum_of(Usecase),
            "config": OBJECT,
            "metadata": OBJECT,
            "team_id": {"type": ["integer", "null"]},
            "last_seq": {"type": "integer", "minimum": 0},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "unread_count": {"type": "integer", "minimum": 0,
                             "description": "Only with ?participant=: messages after its "
                             "horizon."},
            "last_read_seq": {"type": "integer", "minimum": 0,
                              "description": "Only with ?participant=."},
            "last_message": {"oneOf": [ref("Message"), {"type": "null"}],
                             "description": "Only with ?participant=."},
        },
    },
    "MessageCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["content"],
        "properties": {
            "content": {"type": "string"},
            "content_type": enum_of(ContentType),
            "filename": {"type": ["string", "null"], "minLength": 1, "maxLength": 255},
            "type": enum_of(MessageType),
            "status": enum_of(MessageStatus),
            "metadata": OBJECT,
            "client_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "stream": {"type": "boolean", "description": "Open a stream: the message is stored "
                       "at once and grows by deltas (API keys and agents; see docs/streaming.md)."},
            "run_id": {**HEX_ID, "description": "The run this message belongs to."},
            "action": ACTION_CREATE,
        },
    },
    "MessagePatch": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {"status": enum_of(MessageStatus), "metadata": OBJECT},
    },
    "Message": {
        "type": "object",
        "required": ["id", "conversation_id", "seq", "client_id", "content", "content_type",
                     "filename", "type", "channel", "status", "metadata", "created_by",
                     "author", "created_at", "updated_at"],
        "properties": {
            "id": HEX_ID,
            "conversation_id": HEX_ID,
            "seq": {"type": "integer", "minimum": 1},
            "client_id": {"type": ["string", "null"]},
            "content": {"type": "string"},
            "content_type": enum_of(ContentType),
            "filename": {"type": ["string", "null"]},
            "type": enum_of(MessageType),
            "channel": {"type": "string"},
            "status": enum_of(MessageStatus),
            "metadata": OBJECT,
            "created_by": {"type": "string"},
            "author": ref("Author"),
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "stream": ref("Stream"),
            "run_id": {"type": ["string", "null"], "pattern": "^[0-9a-f]{32}$"},
            "action": {"oneOf": [{"type": "null"}, ref("Action")]},
        },
    },
    "Stream": {
        "type": "object",
        "description": "Only on streamed messages.",
        "required": ["state", "next_index"],
        "properties": {
            "state": enum_of(StreamState),
            "next_index": {"type": "integer", "minimum": 0,
                           "description": "The index of the next delta; content holds the "
                           "text of every delta below it."},
            "reason": {"type": "string", "description": "Why it was aborted (idle: by the "
                       "server after [streams] idle_timeout)."},
        },
    },
    "DeltaAppend": {
        "type": "object",
        "additionalProperties": False,
        "required": ["deltas"],
        "properties": {
            "deltas": {
                "type": "array", "minItems": 1,
                "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["index", "text"],
                    "properties": {"index": {"type": "integer", "minimum": 0,
                                             "maximum": 2**31 - 1},
                                   "text": {"type": "string"}},
                },
            },
        },
    },
    "DeltaAck": {
        "type": "object",
        "required": ["message_id", "next_index"],
        "properties": {"message_id": HEX_ID, "next_index": {"type": "integer", "minimum": 0}},
    },
    "StreamComplete": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "content": {"type": "string", "description": "The final text (replaces the "
                        "text appended)."},
            "status": enum_of(MessageStatus),
            "metadata": OBJECT,
        },
    },
    "StreamAbort": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 200}},
    },
    "Author": {
        "type": "object",
        "description": "Who wrote a message, decided by the server from the credential.",
        "required": ["id", "kind", "name"],
        "properties": {"id": {"type": "string"}, "kind": enum_of(AuthorKind),
                       "name": {"type": "string"}},
    },
    "ParticipantPut": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "kind": enum_of(ParticipantKind),
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "role": enum_of(ParticipantRole),
            "metadata": OBJECT,
        },
    },
    "Participant": {
        "type": "object",
        "required": ["id", "kind", "name", "role", "metadata", "joined_at", "last_read_seq"],
        "properties": {
            "id": PARTICIPANT_ID,
            "kind": enum_of(ParticipantKind),
            "name": {"type": "string"},
            "role": enum_of(ParticipantRole),
            "metadata": OBJECT,
            "joined_at": TIMESTAMP,
            "last_read_seq": {"type": "integer", "minimum": 0},
        },
    },
    "ReadMark": {
        "type": "object",
        "additionalProperties": False,
        "required": ["seq"],
        "properties": {"seq": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1,
                               "description": "Every message up to this seq is read; a lower "
                               "seq than the current horizon changes nothing."}},
    },
    "WorkflowConversationCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["agent_product_id"],
        "properties": {
            "agent_product_id": POSITIVE_ID,
            "user_id": {"type": ["integer", "null"], "minimum": 1, "maximum": 2**63 - 1},
            "configuration": {"type": ["object", "null"]},
        },
    },
    "WorkflowConversationPatch": {
        "type": "object",
        "additionalProperties": False,
        "description": "Fields to set; `configuration` is replaced whole.",
        "properties": {
            "agent_product_id": POSITIVE_ID,
            "user_id": {"type": ["integer", "null"], "minimum": 1, "maximum": 2**63 - 1},
            "configuration": OBJECT,
        },
    },
    "WorkflowConnection": {
        "type": "object",
        "description": "Top-level keys merged into `configuration`; the rest is kept.",
    },
    "WorkflowConversation": {
        "type": "object",
        "required": ["id", "agent_product_id", "user_id", "team_id", "configuration",
                     "created_at", "updated_at"],
        "properties": {
            "id": POSITIVE_ID,
            "agent_product_id": POSITIVE_ID,
            "user_id": {"type": ["integer", "null"]},
            "team_id": {"type": ["integer", "null"]},
            "configuration": OBJECT,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
    },
    "WebhookEndpoint": {
        "type": "object",
        "required": ["url", "enabled", "pending_deliveries"],
        "properties": ENDPOINT_STATE,
    },
    "WebhookSecret": {
        "type": "object",
        "required": ["webhook_secret"],
        "properties": {
            "webhook_secret": {"type": "string", "pattern": "^whsec_"},
            "previous_secret_expires_at": NULLABLE_TIMESTAMP,
        },
    },
    "WebhookAttempt": {
        "type": "object",
        "required": ["attempt", "trigger", "status_code", "duration_ms", "created_at"],
        "properties": {
            "attempt": {"type": "integer"},
            "trigger": {"type": "string", "enum": ["scheduled", "manual"]},
            "status_code": {"type": "integer", "description": "0 for network errors."},
            "response_body": {"type": ["string", "null"]},
            "error": {"type": ["string", "null"]},
            "duration_ms": {"type": ["number", "integer"]},
            "created_at": TIMESTAMP,
        },
    },
    "WebhookDelivery": {
        "type": "object",
        "required": ["id", "event_type", "status", "attempt_count", "attempts", "payload"],
        "properties": {
            "id": HEX_ID,
            "position": {"type": ["integer", "null"]},
            "event_type": {"type": "string"},
            "seq": {"type": ["integer", "null"]},
            "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
            "attempt_count": {"type": "integer", "minimum": 0},
            "next_attempt_at": NULLABLE_TIMESTAMP,
            "created_at": TIMESTAMP,
            "finished_at": NULLABLE_TIMESTAMP,
            "payload": OBJECT,
            "attempts": {"type": "array", "items": ref("WebhookAttempt")},
            "success": {"type": "boolean"},
        },
    },
    "TokenCreate": {
        "type": "object",
        "additionalProperties": False,
        "description": "Give `participant` (or its older name `user`).",
        "properties": {
            "participant": {**PARTICIPANT_ID, "description": "The participant the token "
                            "writes as (created as a user member when missing, unless "
                            "config.participants is \"closed\"); created_by of its messages."},
            "user": {**PARTICIPANT_ID, "description": "The older name of `participant`."},
            "kind": {"type": "string", "enum": ["user", "agent"], "default": "user",
                     "description": "agent: posts AGENT_OUTPUT and may update its own "
                     "messages."},
            "ttl": {"type": "integer", "minimum": 1, "maximum": 86400,
                    "description": "Seconds until it expires (at most [realtime] "
                    "token_ttl_max)."},
        },
    },
    "Token": {
        "type": "object",
        "required": ["token", "expires_at"],
        "properties": {"token": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
                       "expires_at": TIMESTAMP},
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "checks": OBJECT, "tasks": OBJECT},
    },
    # --- team-wide webhook endpoints ---------------------------------------------------------
    "TeamEndpointCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["url", "event_types"],
        "properties": {
            "url": {"type": "string", "minLength": 1},
            "event_types": EVENT_FILTER,
            "description": {"type": "string"},
            "disabled": {"type": "boolean"},
            "team_id": {"type": ["integer", "null"], "description": "Admin keys only: the "
                        "team whose conversations it receives (a team key's own otherwise)."},
        },
    },
    "TeamEndpointPatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "minLength": 1},
            "event_types": EVENT_FILTER,
            "description": {"type": "string"},
            "disabled": {"type": "boolean", "description": "true: nothing more is queued for "
                         "it; false: queueing starts again and its held deliveries go out."},
        },
    },
    "TeamEndpoint": {
        "type": "object",
        "required": ["id", "team_id", "url", "event_types", "description", "disabled",
                     "enabled", "pending_deliveries", "created_at", "updated_at"],
        "properties": {
            **ENDPOINT_STATE,
            "id": HEX_ID,
            "team_id": {"type": ["integer", "null"]},
            "event_types": {"type": "array", "items": {"type": "string"}},
            "description": {"type": "string"},
            "disabled": {"type": "boolean"},
            "updated_at": TIMESTAMP,
            "secret": {"type": "string", "pattern": "^whsec_",
                       "description": "Only in the answer to the create: keep it."},
        },
    },
    "WebhookEvent": {
        "type": "object",
        "required": ["type", "timestamp", "data"],
        "description": "The body of every webhook (Standard Webhooks: signed with the "
                       "endpoint's secret in webhook-id, webhook-timestamp, webhook-signature).",
        "properties": {
            "type": {"type": "string", "enum": sorted(EVENT_TYPES)},
            "timestamp": TIMESTAMP,
            "data": {"type": "object", "properties": {
                "conversation_id": HEX_ID, "endpoint_id": HEX_ID, "message": ref("Message"),
                "conversation": ref("Conversation"), "participant": OBJECT, "run": OBJECT,
            }},
        },
    },
    # --- runs and actions (issue 17) --------------------------------------------------------------
    "RunCreate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "agent": {"type": "string", "minLength": 1, "maxLength": 200,
                      "description": "The agent (participant id) that works on the run; "
                      "required with an API key, an agent credential's own by default."},
            "input_seq": {"type": "integer", "minimum": 1,
                          "description": "The message the run answers."},
            "metadata": OBJECT,
        },
    },
    "RunPatch": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "status": enum_of(RunStatus),
            "error": {"type": ["object", "null"], "description": "Only with status failed."},
            "activity": {"type": ["string", "null"], "maxLength": 200,
                         "description": "What the agent does now (a frame, not a webhook)."},
        },
    },
    "Run": {
        "type": "object",
        "required": ["id", "conversation_id", "agent", "status", "input_seq", "metadata", "error",
                     "activity", "queued_behind", "cancel_requested_at", "seq", "version",
                     "created_by", "created_at", "started_at", "ended_at", "updated_at"],
        "properties": {
            "id": HEX_ID,
            "conversation_id": HEX_ID,
            "agent": {"type": "string"},
            "status": enum_of(RunStatus),
            "input_seq": {"type": ["integer", "null"]},
            "metadata": OBJECT,
            "error": {"type": ["object", "null"]},
            "activity": {"type": ["string", "null"]},
            "queued_behind": {"type": ["string", "null"], "pattern": "^[0-9a-f]{32}$"},
            "cancel_requested_at": NULLABLE_TIMESTAMP,
            "seq": {"type": "integer", "minimum": 0,
                    "description": "The conversation's last seq when the run last changed."},
            "version": {"type": "integer", "minimum": 1,
                        "description": "Grows with every change: keep the highest."},
            "created_by": {"type": "string"},
            "created_at": TIMESTAMP,
            "started_at": NULLABLE_TIMESTAMP,
            "ended_at": NULLABLE_TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
    },
    "ActionOption": ACTION_OPTION,
    "ActionCreate": ACTION_CREATE,
    "Action": {
        "type": "object",
        "required": ["kind", "prompt", "options", "schema", "expires_at", "answer",
                     "answered_by", "answered_at"],
        "properties": {
            "kind": enum_of(ActionKind),
            "prompt": {"type": "string"},
            "options": {"type": ["array", "null"], "items": ref("ActionOption")},
            "schema": {"type": ["object", "null"]},
            "expires_at": NULLABLE_TIMESTAMP,
            "answer": {"type": ["object", "null"],
                       "description": "{\"option\": id} or {\"values\": {...}}."},
            "answered_by": {"type": ["string", "null"]},
            "answered_at": NULLABLE_TIMESTAMP,
            "answered_seq": {"type": "integer",
                             "description": "The conversation's last seq when answered."},
        },
    },
    "ActionAnswer": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {"option": {"type": "string"}, "values": OBJECT,
                       "client_id": {"type": "string", "maxLength": 200}},
    },
}
