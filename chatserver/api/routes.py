"""The route table: every route named, served at the root and again under /api."""

from __future__ import annotations

from aiohttp import web

from chatserver import ws
from chatserver.api import conversations, health, messages, tokens

CONVERSATION = "/conversations/{conversation_id}"

ROUTES = [
    ("GET", "/healthz", health.healthz, "healthz"),
    ("GET", "/readyz", health.readyz, "readyz"),
    ("POST", "/conversations", conversations.create_conversation, "create_conversation"),
    ("GET", "/conversations", conversations.list_conversations, "list_conversations"),
    ("GET", CONVERSATION, conversations.get_conversation, "get_conversation"),
    ("PATCH", CONVERSATION, conversations.update_conversation, "update_conversation"),
    ("POST", CONVERSATION + "/messages", messages.post_message, "post_message"),
    ("GET", CONVERSATION + "/messages", messages.list_messages, "list_messages"),
    ("PATCH", CONVERSATION + "/messages/{message_id}", messages.update_message, "update_message"),
    ("POST", CONVERSATION + "/tokens", tokens.create_token, "create_token"),
    ("GET", "/ws" + CONVERSATION, ws.conversation_socket, "conversation_socket"),
]


def setup_routes(app: web.Application) -> None:
    for method, path, handler, name in ROUTES:
        app.router.add_route(method, path, handler, name=name)
        app.router.add_route(method, "/api" + path, handler, name="api." + name)
