"""Which browser origins are allowed: one check for CORS and for websocket upgrades."""

from __future__ import annotations


def origin_listed(allowed: tuple[str, ...], origin: str | None) -> bool:
    """Whether a browser's Origin is in `allowed` (exactly, or `allowed` holds "*")."""
    return origin is not None and ("*" in allowed or origin in allowed)
