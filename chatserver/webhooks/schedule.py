"""What follows an attempt: success, a retry after a jittered delay, failure, or a gone endpoint.

2xx succeeds; an attempt the SSRF guard refused fails at once (waiting will not make the address
allowed, so a row stored before a stricter check is not retried forever); 410 stops delivery to the
endpoint; everything else (3xx included: redirects are never followed) retries along
`[webhooks] schedule`. Timeouts, 429, 502, 503 and 504 wait at least `backoff_floor` and honour
`Retry-After` (seconds or an HTTP date, capped at `retry_after_max`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from chatserver.config import WebhookSettings
from chatserver.webhooks.sender import AttemptResult

BACKPRESSURE_STATUSES = frozenset({429, 502, 503, 504})
GONE = 410


class Verdict(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"
    REFUSED = "refused"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay: float = 0.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from Retry-After (delta-seconds or HTTP-date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def jittered(base: float, jitter: float, rng: random.Random | None = None) -> float:
    spread = base * jitter
    return max(0.0, base + (rng or random).uniform(-spread, spread))


def decide(
    result: AttemptResult, failures_before: int, settings: WebhookSettings,
    rng: random.Random | None = None,
) -> Decision:
    """The verdict after a scheduled attempt, given how many scheduled attempts failed before it."""
    if result.ok:
        return Decision(Verdict.SUCCEEDED)
    if result.refused:
        return Decision(Verdict.REFUSED)
    if result.status_code == GONE:
        return Decision(Verdict.GONE)
    if failures_before >= len(settings.schedule):
        return Decision(Verdict.FAILED)
    delay = jittered(settings.schedule[failures_before], settings.jitter, rng)
    if result.timed_out or result.status_code in BACKPRESSURE_STATUSES:
        delay = max(delay, settings.backoff_floor)
        retry_after = parse_retry_after(result.retry_after)
        if retry_after is not None:
            delay = max(delay, min(retry_after, settings.retry_after_max))
    return Decision(Verdict.RETRY, delay)
