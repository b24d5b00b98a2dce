"""Re-encryption of stored secrets under `[security] secret_key`.

Runs at every start (and by `chatserver secrets rotate`): plain-text rows written before a key was
set, and rows sealed with one of `previous_keys`, are sealed again with the first key, in one
transaction that locks the rows, so instances starting together do the work once.
"""

from __future__ import annotations

import logging
from typing import Any

from chatserver.security.box import PREFIX, SecretBox, SecretKeyError
from chatserver.store import secrets as secret_store
from chatserver.store import webhooks as webhook_store

log = logging.getLogger(__name__)


async def reseal_all(conn: Any, box: SecretBox) -> int:
    """Re-encrypt every stored secret not sealed with the first key; the number of rows changed.
    Without a key, refuse (SecretKeyError) when some webhook secret is already encrypted."""
    if not box.enabled:
        if await webhook_store.any_sealed_endpoint_secret(conn, PREFIX):
            raise SecretKeyError("webhook secrets are stored encrypted: set [security] secret_key")
        return 0
    changed = 0
    async with conn.transaction():
        for row in await secret_store.lock_all_secrets(conn):
            stored = bytes(row["secret"])
            if not box.is_current(stored.decode("latin-1")):
                await secret_store.update_secret(
                    conn, row["name"], box.seal_bytes(box.open_bytes(stored)))
                changed += 1
        for row in await webhook_store.lock_endpoint_secrets(conn):
            secret, previous = row["secret"], row["previous_secret"]
            if box.is_current(secret) and (previous is None or box.is_current(previous)):
                continue
            await webhook_store.update_endpoint_secrets(
                conn, row["id"], box.reseal(secret),
                None if previous is None else box.reseal(previous),
            )
            changed += 1
    if changed:
        log.info("re-encrypted %d stored secret row(s) with [security] secret_key", changed)
    return changed


def warn_without_key(box: SecretBox) -> None:
    """The start-up warning when secrets are kept in plain text."""
    if not box.enabled:
        log.warning("[security] secret_key is not set: webhook secrets and the token signing key "
                    "are stored in plain text (set CHATSERVER_SECURITY_SECRET_KEY)")
