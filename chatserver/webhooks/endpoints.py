"""A conversation's webhook endpoint: kept in step with `config.callback_url`, with its secret.

The endpoint (and its `whsec_` secret) is created the first time a callback_url is set, in the
same transaction as the conversation write; the secret is handed back only then. Removing the
callback_url keeps the endpoint (secret, log) but queues nothing more.
"""

from __future__ import annotations

import uuid
from typing import Any

from chatserver.config import WebhookSettings
from chatserver.security.box import SecretBox
from chatserver.store import webhooks as store
from chatserver.webhooks.signing import new_secret
from chatserver.webhooks.ssrf import AddressPolicy


class WebhookEndpoints:
    """What the conversation service calls: URL checks and endpoint upkeep."""

    def __init__(
        self, settings: WebhookSettings | None = None, box: SecretBox | None = None
    ) -> None:
        self.settings = settings or WebhookSettings()
        self.box = box or SecretBox()
        self.policy = AddressPolicy(self.settings.allowed_networks)

    def check_url(self, url: str) -> str | None:
        """Why a callback_url is refused at create/PATCH (no DNS lookup), or None."""
        return self.policy.check_url(url)

    async def sync(
        self, conn: Any, conversation_id: uuid.UUID, config: dict[str, Any], *,
        reenable: bool = False,
    ) -> str | None:
        """Point the endpoint at config's callback_url; return the secret if it was just made."""
        url = config.get("callback_url")
        if not url:
            await store.clear_endpoint_url(conn, conversation_id)
            return None
        secret = new_secret()
        row = await store.upsert_endpoint(conn, conversation_id, url, self.box.seal(secret))
        if reenable and row["disabled_at"] is not None:
            await store.enable_endpoint(conn, conversation_id)
        return secret if row["inserted"] else None


def with_webhook_secret(conversation: dict[str, Any], secret: str | None) -> dict[str, Any]:
    """The conversation JSON, plus `webhook_secret` when one was just created (shown only once)."""
    if secret is not None:
        conversation["webhook_secret"] = secret
    return conversation
