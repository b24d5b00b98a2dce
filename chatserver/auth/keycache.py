"""API key lookups remembered for a few seconds per instance, so a request costs no key query.

Keys that checked out are kept, under the SHA-256 of the key (never the key itself), for
`[performance] api_key_cache_ttl` seconds. A key revoked (`chatserver keys revoke`) therefore
keeps working on an instance that looked it up within that many seconds, and never longer.

Keys that did not check out (unknown, revoked, or a wrong secret) are kept apart, also under their
hash, for `[performance] unknown_key_cache_ttl` seconds (at most `unknown_key_cache_size` of them,
the oldest forgotten first), so a client repeating a bad key costs no query either. The entry is
for that exact key: a key that starts working after being refused (only a key created with that
very text could) is accepted at most `unknown_key_cache_ttl` seconds later. A stream of different
random keys still costs one query each; `chatserver.ratelimit` throttles it per client address.
"""

from __future__ import annotations

import time
from typing import Any

from chatserver.auth.keys import Principal, hash_key, principal_for_key

CACHED_KEYS = 10_000


class KeyCache:
    def __init__(self, ttl: float, size: int = CACHED_KEYS, *, unknown_ttl: float = 0.0,
                 unknown_size: int = CACHED_KEYS) -> None:
        self.ttl = ttl
        self.size = size
        self.unknown_ttl = unknown_ttl
        self.unknown_size = unknown_size
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        self._unknown: dict[bytes, float] = {}  # hash -> until when it is refused unasked

    async def principal(self, pool: Any, key: str) -> Principal | None:
        digest = hash_key(key)
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and entry[0] > now:
            return entry[1]
        if self._unknown.get(digest, 0.0) > now:
            return None
        async with pool.acquire() as conn:
            who = await principal_for_key(conn, key)
        self._entries.pop(digest, None)
        self._unknown.pop(digest, None)
        if who is None:
            _remember(self._unknown, digest, now + self.unknown_ttl, self.unknown_ttl,
                      self.unknown_size)
        else:
            _remember(self._entries, digest, (now + self.ttl, who), self.ttl, self.size)
        return who


def _remember(entries: dict[bytes, Any], digest: bytes, value: Any, ttl: float,
              size: int) -> None:
    if ttl <= 0 or size <= 0:
        return
    if len(entries) >= size:
        del entries[next(iter(entries))]  # the oldest entry
    entries[digest] = value
