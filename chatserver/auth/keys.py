"""API keys and the request's principal.

A key is `csk_<prefix><secret>`: the 12-character prefix finds the row, the SHA-256 of the whole
key is compared in constant time, and only the hash is stored. Keys use URL-safe characters only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from chatserver.problems import not_found, unauthorized
from chatserver.store import api_keys

KEY_SCHEME = "csk_"
PREFIX_LENGTH = 12
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class Principal:
    """The caller: an API key (team-scoped or admin), or a browser token for one conversation."""

    name: str
    team_id: int | None
    key_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    expires_at: float | None = None  # a token's expiry (Unix time); sockets close after it
    participant: str | None = None  # the participant it acts as (every token; an agent key)
    agent: bool = False  # an agent credential: posts AGENT_OUTPUT, may update its own messages

    @property
    def rate_key(self) -> object:
        """What rate limits count against: the key, or the token's conversation and user."""
        return self.key_id or (self.conversation_id, self.name)

    @property
    def is_token(self) -> bool:
        """A browser token (scoped to one conversation), not an API key."""
        return self.conversation_id is not None

    @property
    def is_admin(self) -> bool:
        return self.team_id is None and self.conversation_id is None

    def check_conversation(self, conversation_id: uuid.UUID) -> None:
        """A conversation-scoped token may touch only its own conversation: 404 otherwise."""
        if self.conversation_id is not None and self.conversation_id != conversation_id:
            raise not_found()


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> tuple[str, str]:
    """A fresh key and its lookup prefix."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    return f"{KEY_SCHEME}{prefix}{secrets.token_urlsafe(32)}", prefix


async def create_api_key(
    conn: Any, name: str, team_id: int | None, agent: str | None = None
) -> tuple[str, Any]:
    """A new key; with `agent`, it writes as that agent participant wherever it posts."""
    key, prefix = new_key()
    row = await api_keys.create_key(conn, name, team_id, prefix, hash_key(key), agent)
    return key, row


async def principal_for_key(conn: Any, key: str) -> Principal | None:
    if not key.startswith(KEY_SCHEME) or len(key) < len(KEY_SCHEME) + PREFIX_LENGTH + 1:
        return None
    prefix = key[len(KEY_SCHEME) : len(KEY_SCHEME) + PREFIX_LENGTH]
    row = await api_keys.get_key_by_prefix(conn, prefix)
    if row is None or row["revoked_at"] is not None:
        return None
    if not hmac.compare_digest(row["key_hash"], hash_key(key)):
        return None
    return Principal(name=row["name"], team_id=row["team_id"], key_id=row["id"],
                     participant=row["agent"], agent=row["agent"] is not None)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("send an API key as 'Authorization: Bearer <key>'")
    return token.strip()
