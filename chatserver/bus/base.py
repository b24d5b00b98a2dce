"""The bus interface: publish bytes on a topic, receive other instances' bytes for topics we follow.

A backend only moves bytes between instances. Delivering to local sockets, ordering and filling gaps
are the hub's job, so every backend stays small.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from chatserver.server.supervisor import Supervisor


class BusState(StrEnum):
    CONNECTING = "connecting"
    OK = "ok"
    DOWN = "down"


class BusHandler(Protocol):
    """What a bus calls back: a payload arrived, or the bus came back after an outage."""

    def on_payload(self, topic: str, payload: bytes) -> None: ...

    def on_reconnect(self) -> None: ...


class Bus(Protocol):
    @property
    def state(self) -> BusState: ...

    def node_states(self) -> dict[str, BusState]:
        """The state of each Redis Cluster primary by "host:port" (empty for other backends)."""

    async def connect(self, handler: BusHandler, supervisor: Supervisor) -> None:
        """Start delivering to `handler`; a backend with a listener runs it under `supervisor`."""

    async def close(self) -> None: ...

    async def publish(self, topic: str, payload: bytes) -> None:
        """Send to every instance following `topic`. Never raises for an unreachable backend."""

    async def subscribe(self, topic: str) -> None: ...

    async def unsubscribe(self, topic: str) -> None: ...
