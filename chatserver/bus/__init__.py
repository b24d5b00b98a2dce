"""The bus: moves serialized events between instances. Pick a backend with `create_bus`."""

from __future__ import annotations

from chatserver.bus.base import Bus, BusHandler, BusState


def create_bus(
    url: str, *, backoff_max: float, stall_timeout: float, cluster: bool = False,
    refresh_interval: float = 5.0,
) -> Bus:
    """A Redis bus for a redis:// or rediss:// URL (a Redis Cluster bus when `cluster`), the
    in-process bus for an empty one."""
    if not url:
        from chatserver.bus.memory import MemoryBus

        return MemoryBus()
    if cluster:
        from chatserver.bus.cluster import ClusterBus

        return ClusterBus(url, backoff_max=backoff_max, stall_timeout=stall_timeout,
                          refresh_interval=refresh_interval)
    from chatserver.bus.redis import RedisBus

    return RedisBus(url, backoff_max=backoff_max, stall_timeout=stall_timeout)


__all__ = ["Bus", "BusHandler", "BusState", "create_bus"]
