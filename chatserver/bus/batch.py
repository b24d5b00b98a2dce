"""Publishes made in one event-loop iteration go out together (e.g. the messages of one group
commit): the first publish schedules one send for the next iteration, later ones join it, and every
caller returns when that send is done. The backend's `send` gets them in the order they were made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Outgoing = list[tuple[str, bytes]]  # (topic, payload)


class PublishBatch:
    def __init__(self, send: Callable[[Outgoing], Awaitable[None]]) -> None:
        self.send = send
        self._outgoing: Outgoing | None = None
        self._sent: asyncio.Future[None] | None = None
        self._senders: set[asyncio.Task[None]] = set()

    async def publish(self, topic: str, payload: bytes) -> None:
        if self._outgoing is None or self._sent is None:
            self._outgoing, self._sent = [], asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._send(self._outgoing, self._sent))
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)
        self._outgoing.append((topic, payload))
        await asyncio.shield(self._sent)

    async def _send(self, outgoing: Outgoing, sent: asyncio.Future[None]) -> None:
        # Runs one iteration after the first publish: everything published meanwhile goes along.
        self._outgoing = self._sent = None
        try:
            await self.send(outgoing)
        finally:
            sent.set_result(None)
