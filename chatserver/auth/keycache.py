"""API key lookups remembered for a few seconds per instance, so a request costs no key query.

Only keys that checked out are kept, under the SHA-256 of the key (never the key itself), for
`[performance] api_key_cache_ttl` seconds. A key revoked (`chatserver keys revoke`) therefore
keeps working on an instance that looked it up within that many seconds, and never longer.
Unknown keys are looked up every time.
"""

from __future__ import annotations

import time
from typing import Any

from chatserver.auth.keys import Principal, hash_key, principal_for_key

CACHED_KEYS = 10_000


class KeyCache:
    def __init__(self, ttl: float, size: int = CACHED_KEYS) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[bytes, tuple[float, Principal]] = {}

    async def principal(self, pool: Any, key: str) -> Principal | None:
        digest = hash_key(key)
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and entry[0] > now:
            return entry[1]
        async with pool.acquire() as conn:
            who = await principal_for_key(conn, key)
        self._entries.pop(digest, None)
        if who is not None and self.ttl > 0:
            if len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]  # the oldest entry
            self._entries[digest] = (now + self.ttl, who)
        return who
