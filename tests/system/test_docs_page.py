"""The API reference at /docs: Redoc, served from the package (no CDN), renders /openapi.json in a
real headless Chromium under the page's Content-Security-Policy."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser

from tests.system.browser_helpers import ARTIFACTS, WAIT_MS


async def test_docs_page_renders_the_api_document(browser: Browser, server: TestServer) -> None:
    base = str(server.make_url("")).rstrip("/")
    page = await browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    outside: list[str] = []
    page.on("requestfinished", lambda req: outside.append(req.url)
            if not req.url.startswith((base, "data:", "blob:")) else None)
    await page.goto(base + "/docs")
    await page.get_by_text("/conversations/{conversation_id}/messages").first.wait_for(
        timeout=WAIT_MS)
    assert await page.get_by_role("heading", name="chatserver").count() >= 1
    # Redoc's footer names a logo on its CDN: the policy blocks it, so nothing leaves the server.
    assert [p for p in problems if "cdn.redoc.ly" not in p] == []
    assert outside == []
    await page.screenshot(path=str(ARTIFACTS / "docs-page.png"))
    await page.close()


async def test_docs_page_is_public_and_not_in_the_api(server: TestServer) -> None:
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/docs") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        async with session.get(base + "/static/vendor/redoc/redoc.standalone.js") as resp:
            assert resp.status == 200
        async with session.get(base + "/openapi.json") as resp:
            assert "/docs" not in (await resp.json())["paths"]
