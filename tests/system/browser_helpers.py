"""Helpers for the browser tests: Debian's Chromium under Playwright, and a REST client.

Chromium is /usr/bin/chromium from the `chromium` Debian package (tests/run.sh installs it);
Playwright only drives it and never downloads a browser of its own.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Bounded waits: long enough that only a real hang fails them, on a loaded 2-core machine.
WAIT_MS = 30_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class ChatPage:
    """One browser tab on the chat page, recording dialogs, page errors and socket URLs."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    socket_urls: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, browser: Browser, url: str, *, bypass_csp: bool = False) -> ChatPage:
        """`bypass_csp` only for tests that inject their own scripts (axe-core)."""
        page = await browser.new_page(viewport={"width": 1000, "height": 640},
                                      bypass_csp=bypass_csp)
        tab = cls(page)
        page.on("dialog", tab.on_dialog)
        page.on("pageerror", lambda e: tab.errors.append(str(e)))
        page.on("websocket", lambda ws: tab.socket_urls.append(ws.url))
        await page.goto(url)
        return tab

    async def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def wait_live(self) -> None:
        await expect(self.page.locator("#connection")).to_have_attribute(
            "data-state", "live", timeout=WAIT_MS)

    async def expect_texts(self, texts: list[str]) -> None:
        """Exactly these message texts, in this order (so none twice, none missing)."""
        await expect(self.page.locator("#messages > li .text")).to_have_text(
            texts, timeout=WAIT_MS)

    async def seqs(self) -> list[int]:
        return await self.page.locator("#messages > li").evaluate_all(
            "items => items.map(li => Number(li.dataset.seq))")

    async def send(self, text: str) -> None:
        await self.page.locator("#text").fill(text)
        await self.page.locator("#text").press("Enter")

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        await self.page.screenshot(path=str(path))
        return path


class Rest:
    """The REST API of a running server, over real HTTP, with one API key."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: str) -> None:
        self.session = session
        self.base = base
        self.key = key

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.session.request(
            method, self.base + path, json=body, headers={"Authorization": f"Bearer {self.key}"}
        ) as resp:
            data = await resp.json(content_type=None)
            assert resp.status == expect, (resp.status, data)
            return data

    async def conversation(self) -> str:
        return (await self.call("POST", "/conversations", {"channel": "API"}, 201))["id"]

    async def token(self, conversation_id: str, user: str) -> str:
        created = await self.call("POST", f"/conversations/{conversation_id}/tokens",
                                  {"user": user}, 201)
        return created["token"]

    async def agent(self, conversation_id: str, participant: str, name: str) -> Rest:
        """An agent participant of the conversation, and this API as that agent's token."""
        await self.call("PUT", f"/conversations/{conversation_id}/participants/{participant}",
                        {"kind": "agent", "name": name}, 201)
        minted = await self.call("POST", f"/conversations/{conversation_id}/tokens",
                                 {"participant": participant, "kind": "agent"}, 201)
        return Rest(self.session, self.base, minted["token"])

    async def post(self, conversation_id: str, content: str, **fields: Any) -> Any:
        return await self.call("POST", f"/conversations/{conversation_id}/messages",
                               {"content": content, **fields}, 201)


async def until(condition: Callable[[], bool]) -> None:
    """Wait, bounded, for something the browser reports through Playwright events."""
    async with asyncio.timeout(WAIT_MS / 1000):
        while not condition():
            await asyncio.sleep(0.05)


def page_url(base: str, conversation_id: str, token: str) -> str:
    return f"{base}/#conversation={conversation_id}&token={token}"


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG, made here (no image files in the repository)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def wav(seconds: float = 0.5, rate: int = 8000) -> bytes:
    """A silent mono 8-bit WAV file."""
    samples = b"\x80" * int(seconds * rate)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body
