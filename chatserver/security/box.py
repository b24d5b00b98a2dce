"""SecretBox: encrypts secrets kept in Postgres (webhook secrets, the token signing key).

With `[security] secret_key` set, a stored secret is `enc1:` + a Fernet token (AES-128-CBC with
HMAC-SHA256, from `cryptography`) made with that key; `[security] previous_keys` still decrypt, so
a key can be rotated while rows are re-encrypted (see `security.rotation`). Each configured key is
any string of at least 32 characters, stretched to a Fernet key with HKDF-SHA256. Values without
the prefix are plain text written before a key was set: they are read as they are, and re-encrypted
at the next rotation. Without a key, secrets are stored and read in plain text, as before.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chatserver.config import ConfigError, SecuritySettings

PREFIX = "enc1:"
MIN_KEY_LENGTH = 32
_HKDF_INFO = b"chatserver secrets at rest v1"


class SecretKeyError(RuntimeError):
    """A stored secret cannot be decrypted with the configured keys (or none is configured)."""


def fernet_key(secret_key: str) -> bytes:
    """The Fernet key (urlsafe base64 of 32 bytes) derived from a configured key string."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret_key.encode()
    )
    return base64.urlsafe_b64encode(derived)


class SecretBox:
    """Seals secrets with the first key; opens with any key, or passes legacy plain text through."""

    def __init__(self, keys: Sequence[str] = ()) -> None:
        self._fernets = [Fernet(fernet_key(k)) for k in keys]
        self._all = MultiFernet(self._fernets) if self._fernets else None

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> SecretBox:
        if not settings.secret_key:
            if settings.previous_keys:
                raise ConfigError("[security] previous_keys needs [security] secret_key")
            return cls()
        for label, key in [("secret_key", settings.secret_key),
                           *(("previous_keys", k) for k in settings.previous_keys)]:
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigError(
                    f"[security] {label}: must be at least {MIN_KEY_LENGTH} characters")
        return cls((settings.secret_key, *settings.previous_keys))

    @property
    def enabled(self) -> bool:
        return self._all is not None

    def seal(self, secret: str) -> str:
        """The form to store: encrypted with the first key, or `secret` itself without a key."""
        if not self._fernets:
            return secret
        return PREFIX + self._fernets[0].encrypt(secret.encode()).decode("ascii")

    def open(self, stored: str) -> str:
        """The secret from its stored form (encrypted under any configured key, or plain)."""
        if not stored.startswith(PREFIX):
            return stored
        if self._all is None:
            raise SecretKeyError("a stored secret is encrypted: set [security] secret_key")
        try:
            return self._all.decrypt(stored[len(PREFIX):].encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise SecretKeyError(
                "a stored secret does not decrypt with [security] secret_key or previous_keys"
            ) from exc

    def seal_bytes(self, secret: bytes) -> bytes:
        """`seal` for a binary secret (a bytea column): base64 inside the encrypted form."""
        if not self.enabled:
            return secret
        return self.seal(base64.b64encode(secret).decode("ascii")).encode("ascii")

    def open_bytes(self, stored: bytes) -> bytes:
        """`open` for a binary secret; bytes without the prefix are the plain secret."""
        if not stored.startswith(PREFIX.encode()):
            return stored
        return base64.b64decode(self.open(stored.decode("ascii")))

    def is_current(self, stored: str) -> bool:
        """True when `stored` needs no re-encryption: sealed with the first key (or no key set)."""
        if not self._fernets:
            return True
        if not stored.startswith(PREFIX):
            return False
        try:
            self._fernets[0].decrypt(stored[len(PREFIX):].encode("ascii"))
        except InvalidToken:
            return False
        return True

    def reseal(self, stored: str) -> str:
        """`stored` sealed with the first key (opened with whichever key sealed it)."""
        return self.seal(self.open(stored))
