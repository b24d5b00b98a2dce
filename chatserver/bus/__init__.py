"""The bus: moves serialized events between instances. Pick a backend with `create_bus`."""

from __future__ import annotations

from chatserver.bus.base import Bus, BusHandler, BusState


def create_bus(url: str, *, backoff_max: float, stall_timeout: float) -> Bus:
    """A Redis bus for a redis:// or rediss:// URL, the in-process bus for an empty one."""
    if not url:
        from chatserver.bus.memory import MemoryBus

        return MemoryBus()
    from chatserver.bus.redis import RedisBus

    return RedisBus(url, backoff_max=backoff_max, stall_timeout=stall_timeout)


__all__ = ["Bus", "BusHandler", "BusState", "create_bus"]
