"""Typed keys for everything stored on the aiohttp Application (and the request's principal).

The types are imported for the type checker only: this module imports nothing of chatserver at run
time, so any room may name a key without importing the rooms that fill it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import asyncpg
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
    from chatserver.security.box import SecretBox
    from chatserver.server.shutdown import Shutdown
    from chatserver.server.supervisor import Supervisor
    from chatserver.services.actions import ActionService
    from chatserver.services.conversations import ConversationService
    from chatserver.services.endpoints import TeamEndpointService
    from chatserver.services.messages import MessageService
    from chatserver.services.participants import ParticipantService
    from chatserver.services.runs import RunService
    from chatserver.services.streams import StreamService
    from chatserver.services.webhooks import WebhookService
    from chatserver.webhooks.sender import WebhookSender

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DB_POOL: web.AppKey[asyncpg.Pool] = web.AppKey("db_pool")
CONVERSATIONS: web.AppKey[ConversationService] = web.AppKey("conversations")
MESSAGES: web.AppKey[MessageService] = web.AppKey("messages")
PARTICIPANTS: web.AppKey[ParticipantService] = web.AppKey("participants")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
SUPERVISOR: web.AppKey[Supervisor] = web.AppKey("supervisor")
RATE_LIMITER: web.AppKey[KeyedLimiter] = web.AppKey("rate_limiter")
# Failed authentications per client address (REST and websocket upgrades).
AUTH_THROTTLE: web.AppKey[KeyedLimiter] = web.AppKey("auth_throttle")
OPENAPI_DOCUMENT: web.AppKey[dict] = web.AppKey("openapi_document")
BODY_VALIDATORS: web.AppKey[dict] = web.AppKey("body_validators")
WEBHOOKS: web.AppKey[WebhookService] = web.AppKey("webhooks")
TEAM_ENDPOINTS: web.AppKey[TeamEndpointService] = web.AppKey("team_endpoints")
WEBHOOK_SENDER: web.AppKey[WebhookSender] = web.AppKey("webhook_sender")
# Optional: the resolver webhook deliveries look names up with (tests map names without DNS).
WEBHOOK_RESOLVER: web.AppKey[AbstractResolver] = web.AppKey("webhook_resolver")
HUB: web.AppKey[Hub] = web.AppKey("hub")
PRESENCE: web.AppKey[Presence] = web.AppKey("presence")
TOKENS: web.AppKey[TokenSigner] = web.AppKey("tokens")
SOCKETS: web.AppKey[SocketRegistry] = web.AppKey("sockets")
SHUTDOWN: web.AppKey[Shutdown] = web.AppKey("shutdown")
KEY_CACHE: web.AppKey[KeyCache] = web.AppKey("key_cache")
STREAMS: web.AppKey[StreamService] = web.AppKey("streams")
SECRET_BOX: web.AppKey[SecretBox] = web.AppKey("secret_box")
RUNS: web.AppKey[RunService] = web.AppKey("runs")
ACTIONS: web.AppKey[ActionService] = web.AppKey("actions")

# Request-scoped: set by the auth middleware.
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
