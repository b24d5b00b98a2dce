"""Browser tokens: short-lived HS256 JWTs scoped to one conversation and one participant.

The signing secret is `[realtime] token_secret` when set, otherwise one generated on first start
and kept in Postgres (encrypted when `[security] secret_key` is set), so a token minted by any
instance works on every other. A token's principal carries its conversation, which limits it to
that conversation's socket and history, and its participant (`sub`); an agent token
(`knd: "agent"`) writes as that agent.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt

from chatserver.auth.keycache import KeyCache
from chatserver.auth.keys import KEY_SCHEME, Principal, principal_for_key
from chatserver.security.box import SecretBox
from chatserver.store import secrets as secret_store

ALGORITHM = "HS256"
AUDIENCE = "chatserver"
SECRET_NAME = "browser_tokens"
AGENT_CLAIM = "knd"
AGENT_KIND = "agent"


async def load_secret(pool: asyncpg.Pool, configured: str, box: SecretBox | None = None) -> bytes:
    if configured:
        return configured.encode()
    box = box or SecretBox()
    async with pool.acquire() as conn:
        stored = await secret_store.get_or_create_secret(
            conn, SECRET_NAME, box.seal_bytes(secrets.token_bytes(64)))
    return box.open_bytes(stored)


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def issue(
        self, conversation_id: uuid.UUID, user: str, team_id: int | None, ttl: int,
        *, agent: bool = False,
    ) -> tuple[str, datetime]:
        now = datetime.now(UTC)
        expires_at = now + timedelta(seconds=ttl)
        claims: dict[str, Any] = {
            "aud": AUDIENCE, "sub": user, "cid": conversation_id.hex, "team": team_id,
            "iat": now, "exp": expires_at,
        }
        if agent:
            claims[AGENT_CLAIM] = AGENT_KIND
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires_at

    def verify(self, token: str) -> Principal | None:
        """The token's principal, or None for a bad, foreign or expired token."""
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], audience=AUDIENCE,
                options={"require": ["exp", "sub", "cid"]},
            )
            conversation_id = uuid.UUID(hex=claims["cid"])
        except (jwt.InvalidTokenError, ValueError, TypeError):
            return None
        team = claims.get("team")
        return Principal(
            name=str(claims["sub"]), team_id=team if isinstance(team, int) else None,
            conversation_id=conversation_id, expires_at=float(claims["exp"]),
            participant=str(claims["sub"]), agent=claims.get(AGENT_CLAIM) == AGENT_KIND,
        )


async def authenticate(
    pool: asyncpg.Pool, signer: TokenSigner, credential: str, keys: KeyCache | None = None,
) -> Principal | None:
    """An API key's or a browser token's principal; None when neither checks out.

    Keys and tokens are ASCII: anything else (a header's bytes that were not UTF-8 arrive as lone
    surrogates, which Postgres cannot take) is refused before any lookup.
    """
    if not credential.isascii():
        return None
    if credential.startswith(KEY_SCHEME):
        if keys is not None:
            return await keys.principal(pool, credential)
        async with pool.acquire() as conn:
            return await principal_for_key(conn, credential)
    return signer.verify(credential)
