"""The route table: every route named, served at the root and again under /api."""

from __future__ import annotations

from aiohttp import web

from chatserver.api import (
    conversations,
    endpoints,
    health,
    messages,
    openapi,
    participants,
    runs,
    streams,
    tokens,
    webhooks,
    workflows,
)
from chatserver.api import metrics as metrics_api
from chatserver.api.static import setup_static
from chatserver.appkeys import BODY_VALIDATORS, OPENAPI_DOCUMENT
from chatserver.openapi.document import build_document
from chatserver.openapi.validate import compile_validators
from chatserver.realtime import ws

CONVERSATION = "/conversations/{conversation_id}"
WORKFLOW = "/workflow-conversations"
ENDPOINTS = "/webhook-endpoints"
ENDPOINT = ENDPOINTS + "/{endpoint_id}"
MESSAGE = CONVERSATION + "/messages/{message_id}"
PARTICIPANT = CONVERSATION + "/participants/{participant_id}"

ROUTES = [
    ("GET", "/healthz", health.healthz, "healthz"),
    ("GET", "/readyz", health.readyz, "readyz"),
    ("GET", "/metrics", metrics_api.metrics, "metrics"),
    ("GET", "/openapi.json", openapi.openapi_json, "openapi"),
    ("POST", "/conversations", conversations.create_conversation, "create_conversation"),
    ("GET", "/conversations", conversations.list_conversations, "list_conversations"),
    ("GET", CONVERSATION, conversations.get_conversation, "get_conversation"),
    ("PATCH", CONVERSATION, conversations.update_conversation, "update_conversation"),
    ("POST", CONVERSATION + "/messages", messages.post_message, "post_message"),
    ("GET", CONVERSATION + "/messages", messages.list_messages, "list_messages"),
    ("PATCH", CONVERSATION + "/messages/{message_id}", messages.update_message, "update_message"),
    ("POST", MESSAGE + "/deltas", streams.append_deltas, "append_deltas"),
    ("POST", MESSAGE + "/complete", streams.complete_stream, "complete_stream"),
    ("POST", MESSAGE + "/abort", streams.abort_stream, "abort_stream"),
    ("POST", WORKFLOW, workflows.create_workflow_conversation, "create_workflow_conversation"),
    ("GET", WORKFLOW + "/{id}", workflows.get_workflow_conversation, "get_workflow_conversation"),
    ("PATCH", WORKFLOW + "/{id}", workflows.update_workflow_conversation,
     "update_workflow_conversation"),
    ("POST", WORKFLOW + "/{id}/connect", workflows.connect_to_workflow_conversation,
     "connect_to_workflow_conversation"),
    ("GET", "/users/{user_id}" + WORKFLOW, workflows.list_user_workflow_conversations,
     "list_user_workflow_conversations"),
    ("GET", CONVERSATION + "/webhook", webhooks.get_webhook, "get_webhook"),
    ("POST", CONVERSATION + "/webhook/enable", webhooks.enable_webhook, "enable_webhook"),
    ("POST", CONVERSATION + "/webhook-secret/rotate", webhooks.rotate_secret, "rotate_secret"),
    ("GET", CONVERSATION + "/webhook-deliveries", webhooks.list_deliveries, "list_deliveries"),
    ("POST", CONVERSATION + "/webhook-deliveries/{delivery_id}/redeliver", webhooks.redeliver,
     "redeliver"),
    ("POST", CONVERSATION + "/webhook-test", webhooks.send_test, "webhook_test"),
    ("POST", CONVERSATION + "/tokens", tokens.create_token, "create_token"),
    ("POST", ENDPOINTS, endpoints.create_endpoint, "create_endpoint"),
    ("GET", ENDPOINTS, endpoints.list_endpoints, "list_endpoints"),
    ("GET", ENDPOINT, endpoints.get_endpoint, "get_endpoint"),
    ("PATCH", ENDPOINT, endpoints.update_endpoint, "update_endpoint"),
    ("DELETE", ENDPOINT, endpoints.delete_endpoint, "delete_endpoint"),
    ("POST", ENDPOINT + "/test", endpoints.test_endpoint, "test_endpoint"),
    ("GET", ENDPOINT + "/deliveries", endpoints.list_endpoint_deliveries,
     "list_endpoint_deliveries"),
    ("POST", ENDPOINT + "/deliveries/{delivery_id}/redeliver", endpoints.redeliver_to_endpoint,
     "redeliver_to_endpoint"),
    ("GET", CONVERSATION + "/participants", participants.list_participants, "list_participants"),
    ("PUT", PARTICIPANT, participants.put_participant, "put_participant"),
    ("DELETE", PARTICIPANT, participants.delete_participant, "delete_participant"),
    ("POST", PARTICIPANT + "/read", participants.mark_read, "mark_read"),
    ("POST", CONVERSATION + "/runs", runs.create_run, "create_run"),
    ("GET", CONVERSATION + "/runs", runs.list_runs, "list_runs"),
    ("GET", CONVERSATION + "/runs/{run_id}", runs.get_run, "get_run"),
    ("PATCH", CONVERSATION + "/runs/{run_id}", runs.update_run, "update_run"),
    ("POST", CONVERSATION + "/runs/{run_id}/cancel", runs.cancel_run, "cancel_run"),
    ("POST", CONVERSATION + "/messages/{message_id}/answer", runs.answer_action,
     "answer_action"),
    ("GET", "/ws" + CONVERSATION, ws.conversation_socket, "conversation_socket"),
]


def setup_routes(app: web.Application) -> None:
    app[OPENAPI_DOCUMENT] = build_document(ROUTES)
    app[BODY_VALIDATORS] = compile_validators()
    for method, path, handler, name in ROUTES:
        app.router.add_route(method, path, handler, name=name)
        app.router.add_route(method, "/api" + path, handler, name="api." + name)
    setup_static(app)  # the browser page: public, root only, not in the API document
