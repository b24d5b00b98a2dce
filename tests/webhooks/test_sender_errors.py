"""A failed send's error text (logged, and kept in the delivery log) never carries the
callback_url's credentials: its query string and user info are cut from whatever aiohttp says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chatserver.config import WebhookSettings
from chatserver.webhooks.sender import WebhookSender

SECRET = "s3cret-token"


@pytest.fixture
async def garbage_server() -> AsyncIterator[int]:
    """A TCP server that answers any request with something that is not HTTP."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_error_text_has_no_query_or_user_info(garbage_server: int) -> None:
    url = f"http://hook-user:{SECRET}@127.0.0.1:{garbage_server}/in?token={SECRET}&x=1"
    sender = WebhookSender(WebhookSettings(allowed_networks=("127.0.0.0/8",), timeout=5.0))
    await sender.start()
    try:
        result = await asyncio.wait_for(
            sender.send(url, "msg_test", b"{}", ["whsec_" + "A" * 32]), 30)
    finally:
        await sender.close()
    assert result.status_code == 0 and result.error
    assert SECRET not in result.error, result.error
    assert f"127.0.0.1:{garbage_server}/in" in result.error  # where it failed is still said

