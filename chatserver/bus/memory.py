"""The in-process bus: one instance, nothing to move. Payloads for followed topics loop back."""

from __future__ import annotations

import asyncio

from chatserver.bus.base import BusHandler, BusState
from chatserver.server.supervisor import Supervisor


class MemoryBus:
    def __init__(self) -> None:
        self._handler: BusHandler | None = None
        self._topics: set[str] = set()

    @property
    def state(self) -> BusState:
        return BusState.OK

    def node_states(self) -> dict[str, BusState]:
        return {}

    async def connect(self, handler: BusHandler, supervisor: Supervisor) -> None:
        self._handler = handler  # nothing to listen to: no task to supervise

    async def close(self) -> None:
        self._handler = None
        self._topics.clear()

    async def publish(self, topic: str, payload: bytes) -> None:
        if self._handler is not None and topic in self._topics:
            asyncio.get_running_loop().call_soon(self._handler.on_payload, topic, payload)

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
