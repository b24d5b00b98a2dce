"""The browser pages: `GET /` the chat page (static/index.html), `GET /docs` the API reference
(static/docs.html: Redoc rendering /openapi.json), `/static/...` their files.

These are not API routes: they are public, served at the root only (not under /api), and left out
of the OpenAPI document, which describes the API. The page takes its conversation id and token
from the URL fragment, which browsers never send, so no credential reaches these handlers or the
access log. A strict Content-Security-Policy keeps the page to its own scripts and styles; media
may come from any http(s) URL, as messages carry them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from chatserver.appkeys import SETTINGS

log = logging.getLogger(__name__)

# The page ships inside the package (package data), so every install serves it.
DEFAULT_STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
INDEX_ROUTE = "index"
DOCS_ROUTE = "docs"
STATIC_ROUTE = "static"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' http: https:; media-src http: https:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
# Redoc styles its components inline and runs its search in a worker made from a blob: URL.
DOCS_HEADERS = {
    **PAGE_HEADERS,
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; worker-src blob:; font-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


def static_dir(configured: str) -> Path:
    return Path(configured) if configured else DEFAULT_STATIC_DIR


def setup_static(app: web.Application) -> None:
    """Add `GET /` and `/static/`; with no index.html in a configured directory, log and skip."""
    directory = static_dir(app[SETTINGS].server.static_dir)
    if not (directory / "index.html").is_file():
        log.warning("no browser page: %s/index.html not found ([server] static_dir)", directory)
        return
    index = directory / "index.html"

    async def index_page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(index, headers=PAGE_HEADERS)

    async def docs_page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(directory / "docs.html", headers=DOCS_HEADERS)

    app.router.add_get("/", index_page, name=INDEX_ROUTE)
    if (directory / "docs.html").is_file():
        app.router.add_get("/docs", docs_page, name=DOCS_ROUTE)
    app.router.add_static("/static", directory, name=STATIC_ROUTE, append_version=False)
