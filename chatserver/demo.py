"""`chatserver demo`: a conversation and browser tokens, and the chat page URLs to open.

It works on the configured database directly (like `keys create`), so the server need not run
yet. Tokens are signed with the same secret the server uses (`[realtime] token_secret`, or the
one kept in Postgres), so they work on every instance.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from chatserver.auth.keys import Principal
from chatserver.auth.tokens import TokenSigner, load_secret
from chatserver.config import Settings
from chatserver.db.bootstrap import resolve_dsn, run_migrations
from chatserver.db.pool import create_pool
from chatserver.security.box import SecretBox
from chatserver.services.conversations import ConversationService

DEMO_PRINCIPAL = Principal(name="demo", team_id=None)


@dataclass(frozen=True)
class DemoLink:
    user: str
    url: str


def page_url(base_url: str, conversation_id: str, token: str) -> str:
    """The page with its credentials in the fragment, which browsers never send to the server."""
    return f"{base_url.rstrip('/')}/#{urlencode({'conversation': conversation_id, 'token': token})}"


async def create_demo(
    settings: Settings, users: list[str], base_url: str, ttl: int | None = None
) -> tuple[str, list[DemoLink]]:
    """A new conversation, and one page URL with a fresh token per user."""
    dsn = await resolve_dsn(settings)
    await run_migrations(dsn, partitions=settings.database.partitions)
    pool = await create_pool(
        dsn, dataclasses.replace(settings.database, pool_min_size=1, pool_max_size=2)
    )
    try:
        created = await ConversationService(pool).create(
            DEMO_PRINCIPAL, {"channel": "API", "metadata": {"created_by": "chatserver demo"}}
        )
        box = SecretBox.from_settings(settings.security)
        signer = TokenSigner(await load_secret(pool, settings.realtime.token_secret, box))
    finally:
        await pool.close()
    conversation_id = created["id"]
    lifetime = min(ttl or settings.realtime.token_ttl_default, settings.realtime.token_ttl_max)
    links = []
    for user in users:
        token, _ = signer.issue(uuid.UUID(hex=conversation_id), user, None, lifetime)
        links.append(DemoLink(user, page_url(base_url, conversation_id, token)))
    return conversation_id, links
