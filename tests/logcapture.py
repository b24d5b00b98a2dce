"""Capturing what a logger writes, as its handler would format it, for assertions on log lines."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def captured_log(
    name: str = "", formatter: logging.Formatter | None = None, level: int = logging.INFO,
) -> Iterator[io.StringIO]:
    """Everything `name` (the root logger by default) logs at `level` and above, meanwhile."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    if formatter is not None:
        handler.setFormatter(formatter)
    handler.setLevel(level)
    logger = logging.getLogger(name or None)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
