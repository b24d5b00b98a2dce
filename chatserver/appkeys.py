"""Typed keys for everything stored on the aiohttp Application (and the request's principal)."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from aiohttp.abc import AbstractResolver

from chatserver.auth import Principal
from chatserver.config import Settings
from chatserver.conversations import ConversationService
from chatserver.messages import MessageService
from chatserver.webhooks.service import WebhookService

SETTINGS = web.AppKey("settings", Settings)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
CONVERSATIONS = web.AppKey("conversations", ConversationService)
MESSAGES = web.AppKey("messages", MessageService)
WEBHOOKS = web.AppKey("webhooks", WebhookService)
# Optional: the resolver webhook deliveries look names up with (tests map names without DNS).
WEBHOOK_RESOLVER = web.AppKey("webhook_resolver", AbstractResolver)

# Request-scoped: set by the auth middleware.
PRINCIPAL = web.RequestKey("principal", Principal)



def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
