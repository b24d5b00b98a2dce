"""Token-bucket rate limits, one bucket per caller, kept in this instance's memory.

Callers are API keys and tokens (`[limits] requests_per_second_per_key`), and client addresses for
failed authentications (`[limits] failed_auths_per_second_per_address`): an address over that is
refused before its credentials are looked at, so random keys cost at most that many lookups. A
websocket closed for flooding spends a whole burst of its address's bucket (`penalize`), so the
address is refused before authentication until it has earned that back.

Each instance limits on its own (a caller spread over N instances gets up to N times the rate);
that keeps the hot path free of Redis round trips, as Centrifugo's per-node limits do.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, now: float, count: int = 1) -> float:
        """0 if `count` tokens were taken, else the seconds until they are available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= count:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / self.rate

    def wait(self, now: float) -> float:
        """0 if a token is available, else the seconds until one is; nothing is taken."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate


class KeyedLimiter:
    """Buckets by key; the least recently used are forgotten past `max_keys` (a full bucket)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: Hashable) -> float:
        """0 when allowed; otherwise how long to wait, in seconds."""
        if not self.enabled:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(time.monotonic())

    def wait(self, key: Hashable) -> float:
        """0 when `key` may go ahead; otherwise how long to wait, in seconds. Takes nothing."""
        bucket = self._buckets.get(key) if self.enabled else None
        return 0.0 if bucket is None else bucket.wait(time.monotonic())

    def penalize(self, key: Hashable, tokens: float) -> None:
        """Spend `tokens` of `key`'s bucket at once, into debt: it waits until they are earned."""
        if not self.enabled:
            return
        self.take(key)
        self._buckets[key].tokens -= tokens - 1
