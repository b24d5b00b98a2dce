"""Opaque keyset cursors: a row's (created_at, id) as URL-safe base64, for `before=` parameters."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
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
        return datetime.fromisoformat(stamp), parse_key(key)
    except (ValueError, UnicodeDecodeError):
        raise ValidationProblem([("before", "not a cursor this server issued")]) from None
