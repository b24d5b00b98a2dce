"""Fixtures of the browser tests: a headless Chromium per test, and the app on a real port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser

from chatserver.app import create_app
from chatserver.config import Settings
from tests.system.browser_helpers import chromium


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def server(settings: Settings, aiohttp_server: Any) -> TestServer:
    return await aiohttp_server(create_app(settings), host="127.0.0.1")
