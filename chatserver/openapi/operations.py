"""What each named route does, takes and answers: the source of the OpenAPI operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatserver.openapi.schemas import HEX_ID, PARTICIPANT_ID, POSITIVE_ID, ref

# Path parameters by name, wherever they appear in a route.
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "conversation_id": HEX_ID,
    "message_id": HEX_ID,
    "delivery_id": HEX_ID,
    "endpoint_id": HEX_ID,
    "run_id": HEX_ID,
    "id": POSITIVE_ID,
    "user_id": POSITIVE_ID,
    "participant_id": PARTICIPANT_ID,
}
PARTICIPANT = {"name": "participant", "in": "query", "description": "Only the conversations "
               "this participant is in, newest activity first, with unread_count and "
               "last_message.", "schema": PARTICIPANT_ID}

LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                    "maximum": 500, "default": 50}}
SEQ = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
SEQ_BEFORE = {"name": "before", "in": "query", "description": "Only messages with a lower seq.",
              "schema": SEQ}
SEQ_AFTER = {"name": "after", "in": "query", "description": "Only messages with a higher seq.",
             "schema": SEQ}
ORDER = {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["desc", "asc"],
                                                    "default": "desc"}}
RUNNING = {"name": "running", "in": "query", "description": "Only running ones "
           "(configuration.running is JSON true).",
           "schema": {"type": "string", "enum": ["true", "false"], "default": "false"}}
CURSOR = {"name": "before", "in": "query", "description": "Cursor from the previous page's Link.",
          "schema": {"type": "string"}}


@dataclass(frozen=True)
class Operation:
    summary: str
    response: dict[str, Any] | None = None
    status: int = 200
    request: str | None = None
    query: tuple[dict[str, Any], ...] = ()
    public: bool = False
    errors: tuple[int, ...] = (400, 401, 404, 429)
    paginated: bool = False
    content_type: str = "application/json"
    extra: dict[str, Any] = field(default_factory=dict)
    also: tuple[int, ...] = ()  # other success statuses with the same response


# 409: the conversation has no callback_url (no webhook endpoint).
WEBHOOK_ERRORS = (400, 401, 404, 409, 429)


def array_of(name: str) -> dict[str, Any]:
    return {"type": "array", "items": ref(name)}


OPERATIONS: dict[str, Operation] = {
    "healthz": Operation("Liveness: the process is up.", ref("Health"), public=True, errors=()),
    "readyz": Operation("Readiness: database, bus and background tasks are healthy.",
                        ref("Health"), public=True, errors=(503,)),
    "metrics": Operation("Prometheus metrics (a bearer token when `[metrics] token` is set).",
                         {"type": "string"}, public=True, errors=(401,),
                         content_type="text/plain"),
    "openapi": Operation("This document.", {"type": "object"}, public=True, errors=()),
    "create_conversation": Operation(
        "Create a conversation.", ref("ConversationCreated"), status=201,
        request="ConversationCreate", errors=(400, 401, 413, 429)),
    "list_conversations": Operation(
        "The caller's conversations, newest first.", array_of("Conversation"),
        query=(LIMIT, CURSOR, PARTICIPANT), paginated=True, errors=(400, 401, 403, 429)),
    "get_conversation": Operation("One conversation.", ref("Conversation")),
    "update_conversation": Operation(
        "Change config and/or metadata (top-level merge patches).", ref("Conversation"),
        request="ConversationPatch", errors=(400, 401, 404, 413, 429)),
    "post_message": Operation(
        "Post a message; acknowledged after commit. Idempotent with client_id or "
        "Idempotency-Key. With stream: true, opens a stream (API keys, agents).", ref("Message"),
        status=201, request="MessageCreate", errors=(400, 401, 403, 404, 409, 413, 422, 429),
        extra={"parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                               "schema": {"type": "string", "minLength": 1,
                                          "maxLength": 200}}]}),
    "list_messages": Operation(
        "The history, newest first by default; keyset pagination by seq.", array_of("Message"),
        query=(LIMIT, SEQ_BEFORE, SEQ_AFTER, ORDER), paginated=True),
    "update_message": Operation(
        "Change a message's status and/or metadata; it keeps its seq (an agent token: its own "
        "messages only).", ref("Message"), request="MessagePatch",
        errors=(400, 401, 403, 404, 413, 429)),
    "append_deltas": Operation(
        "Append deltas to a streamed message (consecutive indexes from next_index; all or "
        "nothing); answered once they are durable. Resending an applied index with the same "
        "text is acknowledged again; 409 with expected_index otherwise.", ref("DeltaAck"),
        request="DeltaAppend", errors=(400, 401, 403, 404, 409, 413, 429)),
    "complete_stream": Operation(
        "Complete a streamed message (content, if given, replaces the text); one "
        "message.completed webhook.", ref("Message"), request="StreamComplete",
        errors=(400, 401, 403, 404, 409, 413, 429)),
    "abort_stream": Operation(
        "Abort a streamed message with a reason; one message.completed webhook.", ref("Message"),
        request="StreamAbort", errors=(400, 401, 403, 404, 409, 413, 429)),
    "create_workflow_conversation": Operation(
        "Create a workflow conversation.", ref("WorkflowConversation"), status=201,
        request="WorkflowConversationCreate", errors=(400, 401, 413, 429)),
    "get_workflow_conversation": Operation(
        "One workflow conversation.", ref("WorkflowConversation")),
    "update_workflow_conversation": Operation(
        "Set agent_product_id, user_id and/or configuration (replaced whole).",
        ref("WorkflowConversation"), request="WorkflowConversationPatch",
        errors=(400, 401, 404, 413, 429)),
    "connect_to_workflow_conversation": Operation(
        "Merge connection data into configuration (atomically).", ref("WorkflowConversation"),
        request="WorkflowConnection", errors=(400, 401, 404, 413, 429)),
    "list_user_workflow_conversations": Operation(
        "A user's workflow conversations, newest first.", array_of("WorkflowConversation"),
        query=(LIMIT, CURSOR, RUNNING), paginated=True, errors=(400, 401, 429)),
    "get_webhook": Operation("The conversation's webhook endpoint and its state.",
                             ref("WebhookEndpoint"), errors=WEBHOOK_ERRORS),
    "enable_webhook": Operation("Re-enable a disabled endpoint; its held queue resumes.",
                                ref("WebhookEndpoint"), errors=WEBHOOK_ERRORS),
    "rotate_secret": Operation(
        "Rotate the signing secret; the old one keeps signing for the grace period.",
        ref("WebhookSecret"), errors=WEBHOOK_ERRORS),
    "list_deliveries": Operation(
        "The delivery log with each attempt, newest first.", array_of("WebhookDelivery"),
        query=(LIMIT, {"name": "before", "in": "query", "schema": {"type": "integer",
                                                                   "minimum": 1}}),
        paginated=True),
    "redeliver": Operation("Send a delivery again now, outside the order.",
                           ref("WebhookDelivery"), errors=WEBHOOK_ERRORS),
    "webhook_test": Operation("Send a signed webhook.test event now; answers the outcome.",
                              ref("WebhookDelivery"), errors=WEBHOOK_ERRORS),
    "create_token": Operation(
        "A short-lived token for this conversation and one participant.", ref("Token"),
        status=201, request="TokenCreate", errors=(400, 401, 404, 409, 413, 429)),
    "list_participants": Operation(
        "The conversation's current participants.", array_of("Participant"),
        errors=(400, 401, 404, 429)),
    "put_participant": Operation(
        "Create (201) or update (200) a participant; API keys only.", ref("Participant"),
        also=(201,), request="ParticipantPut", errors=(400, 401, 403, 404, 413, 429)),
    "delete_participant": Operation(
        "Remove a participant (its messages keep their author; its tokens stop working).",
        status=204, errors=(400, 401, 403, 404, 429)),
    "mark_read": Operation(
        "Move the participant's read horizon forward (its own token, or an API key).",
        ref("Participant"), request="ReadMark", errors=(400, 401, 404, 413, 429)),
    "create_run": Operation(
        "Start a run of an agent (queued; under config.on_input_during_run = enqueue it queues "
        "behind the active run).", ref("Run"), status=201, request="RunCreate",
        errors=(400, 401, 403, 404, 413, 429)),
    "list_runs": Operation("The conversation's runs, newest first.", array_of("Run"),
                           query=(LIMIT, CURSOR), paginated=True),
    "get_run": Operation("One run.", ref("Run")),
    "update_run": Operation(
        "The agent moves its run (queued -> running | cancelled; running -> requires_action | "
        "completed | failed | cancelled; requires_action -> running | failed | cancelled) and "
        "says what it does (activity). Any other transition is 409 naming the current status.",
        ref("Run"), request="RunPatch", errors=(400, 401, 403, 404, 409, 413, 429)),
    "cancel_run": Operation(
        "Ask the agent to stop: sets cancel_requested_at (the agent ends the run as cancelled). "
        "409 once the run has ended.", ref("Run"), errors=(400, 401, 404, 409, 429)),
    "answer_action": Operation(
        "Answer a message's action: the first valid answer wins; later ones are 409 "
        "already_answered, late ones 409 expired.", ref("Message"), request="ActionAnswer",
        errors=(400, 401, 404, 409, 413, 429)),
    "conversation_socket": Operation(
        "The conversation's websocket (see docs/websocket.md for the protocol). Credentials and "
        "refusals travel as close codes (4401, 4404, 4400, 4403 Origin, 4429 and 1013 too many "
        "sockets) after the upgrade; a request "
        "that is not a websocket upgrade is 400.", status=101, public=True, errors=(400,),
        extra={"parameters": [{"name": "since", "in": "query", "schema": SEQ}]}),
    "create_endpoint": Operation(
        "Create a team-wide webhook endpoint; its signing secret is in this answer only.",
        ref("TeamEndpoint"), status=201, request="TeamEndpointCreate",
        errors=(400, 401, 403, 409, 413, 429)),
    "list_endpoints": Operation(
        "The team's webhook endpoints (every team's for an admin key), newest first.",
        array_of("TeamEndpoint"), query=(LIMIT, CURSOR), paginated=True,
        errors=(400, 401, 403, 429)),
    "get_endpoint": Operation("One team-wide webhook endpoint.", ref("TeamEndpoint"),
                              errors=(400, 401, 403, 404, 429)),
    "update_endpoint": Operation(
        "Change its url, event_types, description, or disable/enable it.", ref("TeamEndpoint"),
        request="TeamEndpointPatch", errors=(400, 401, 403, 404, 413, 429)),
    "delete_endpoint": Operation("Delete it with its delivery log.", status=204,
                                 errors=(400, 401, 403, 404, 429)),
    "test_endpoint": Operation(
        "Send a signed webhook.test event to it now, whatever its filter; answers the outcome.",
        ref("WebhookDelivery"), errors=(400, 401, 403, 404, 429)),
    "list_endpoint_deliveries": Operation(
        "Its delivery log with each attempt, newest first.", array_of("WebhookDelivery"),
        query=(LIMIT, {"name": "before", "in": "query", "schema": {"type": "integer",
                                                                   "minimum": 1}}),
        paginated=True, errors=(400, 401, 403, 404, 429)),
    "redeliver_to_endpoint": Operation("Send one of its deliveries again now, outside the order.",
                                       ref("WebhookDelivery"), errors=(400, 401, 403, 404, 429)),
}
