"""Typed keys for everything stored on the aiohttp Application (and the request's principal)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from chatserver.auth import Principal
from chatserver.config import Settings
from chatserver.conversations import ConversationService
from chatserver.hub import Hub
from chatserver.messages import MessageService
from chatserver.presence import Presence
from chatserver.tokens import TokenSigner

SETTINGS = web.AppKey("settings", Settings)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
CONVERSATIONS = web.AppKey("conversations", ConversationService)
MESSAGES = web.AppKey("messages", MessageService)
HUB = web.AppKey("hub", Hub)
PRESENCE = web.AppKey("presence", Presence)
TOKENS = web.AppKey("tokens", TokenSigner)

# Request-scoped: set by the auth middleware.
PRINCIPAL = web.RequestKey("principal", Principal)



def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
