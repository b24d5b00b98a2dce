"""Opaque keyset cursors: a row's (created_at, id) as URL-safe base64, for `before=` parameters.

A cursor comes back from the client, so it is checked as untrusted input: its time must carry an
offset and stay inside Python's datetime range once moved to UTC (Postgres would refuse it).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from chatserver.problems import ValidationProblem

K = TypeVar("K")


def encode_cursor(created_at: datetime, key: str) -> str:
    raw = f"{created_at.isoformat()}|{key}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str, parse_key: Callable[[str], K]) -> tuple[datetime, K]:
    """The cursor's (created_at, key); `parse_key` raises ValueError on a malformed key."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        stamp, _, key = raw.partition("|")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("a cursor's time has an offset")
        return created_at.astimezone(UTC), parse_key(key)
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise ValidationProblem([("before", "not a cursor this server issued")]) from None
