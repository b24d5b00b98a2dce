"""The webhook receiver of the write-path scenario: runs inside the load generator (client side).

It answers every POST with 204 (after `delay` seconds, a receiver that does some work) and counts
it; the message's publish time travels in its
content (`~t<monotonic ns>~`), so it also measures publish -> webhook received.
"""

from __future__ import annotations

import asyncio
import time
from array import array

from aiohttp import web

from bench.clients import END, MARK


class WebhookSink:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.received = 0
        self.latencies: array = array("q")
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        i = body.find(MARK)
        if i >= 0:
            self.received += 1
            j = body.find(END, i + 2)
            self.latencies.append(time.monotonic_ns() - int(body[i + 2 : j]))
        return web.Response(status=204)

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
