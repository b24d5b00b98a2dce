"""Helpers for Postgres connection URLs."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def with_database(dsn: str, database: str) -> str:
    """The same server URL pointing at another database (keeps host, socket dir and options)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))
