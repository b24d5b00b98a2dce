"""Webhook fixtures: settings that allow loopback explicitly, and a live receiver."""

from __future__ import annotations

from typing import Any

import pytest

from chatserver.config import Settings
from tests.webhooks.helpers import Receiver, start_receiver, webhook_settings


@pytest.fixture
def settings(database_url: str) -> Settings:
    return webhook_settings(database_url)


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    return await start_receiver(aiohttp_server)
