"""Typed keys for everything stored on the aiohttp Application (and the request's principal)."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from aiohttp.abc import AbstractResolver

from chatserver.auth.keycache import KeyCache
from chatserver.auth.keys import Principal
from chatserver.auth.tokens import TokenSigner
from chatserver.config import Settings
from chatserver.metrics import Metrics
from chatserver.ratelimit import KeyedLimiter
from chatserver.realtime.guard import SocketRegistry
from chatserver.realtime.hub import Hub
from chatserver.realtime.presence import Presence
from chatserver.server.shutdown import Shutdown
from chatserver.server.supervisor import Supervisor
from chatserver.services.conversations import ConversationService
from chatserver.services.messages import MessageService
from chatserver.webhooks.service import WebhookService

SETTINGS = web.AppKey("settings", Settings)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
CONVERSATIONS = web.AppKey("conversations", ConversationService)
MESSAGES = web.AppKey("messages", MessageService)
METRICS = web.AppKey("metrics", Metrics)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
RATE_LIMITER = web.AppKey("rate_limiter", KeyedLimiter)
OPENAPI_DOCUMENT = web.AppKey("openapi_document", dict)
BODY_VALIDATORS = web.AppKey("body_validators", dict)
WEBHOOKS = web.AppKey("webhooks", WebhookService)
# Optional: the resolver webhook deliveries look names up with (tests map names without DNS).
WEBHOOK_RESOLVER = web.AppKey("webhook_resolver", AbstractResolver)
HUB = web.AppKey("hub", Hub)
PRESENCE = web.AppKey("presence", Presence)
TOKENS = web.AppKey("tokens", TokenSigner)
SOCKETS = web.AppKey("sockets", SocketRegistry)
SHUTDOWN = web.AppKey("shutdown", Shutdown)
KEY_CACHE = web.AppKey("key_cache", KeyCache)

# Request-scoped: set by the auth middleware.
PRINCIPAL = web.RequestKey("principal", Principal)



def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
