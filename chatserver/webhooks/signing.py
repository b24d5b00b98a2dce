"""Standard Webhooks signing: `whsec_` secrets and the webhook-id/-timestamp/-signature headers.

The signature is `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, computed by the
`standardwebhooks` package itself; during a secret rotation one signature per secret is sent,
space-separated, so a consumer holding either secret verifies.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signed_headers(
    webhook_id: str, body: bytes, secrets_: Sequence[str], now: datetime | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (the timestamp is fresh each time)."""
    now = now or datetime.now(UTC)
    text = body.decode()
    signatures = " ".join(Webhook(s).sign(webhook_id, now, text) for s in secrets_)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
    }
