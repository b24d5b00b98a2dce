"""Which primary owns which hash slot of a Redis Cluster, read with CLUSTER SLOTS.

Every known node is asked at once and the map most of them report wins: a primary that was killed
and restarted reports its old slots until it hears of the failover, and one stale node must not
send every subscription back to it.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisError

log = logging.getLogger("chatserver.bus.slots")

Address = tuple[str, int]
READ_TIMEOUT = 2.0


def slot(name: str) -> int:
    """The hash slot of a key or shard channel, by the server's own CRC16 (hash tags included)."""
    return int(key_slot(name.encode()))


def address_name(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


@dataclass(frozen=True)
class Topology:
    """Slot ranges (sorted, start/end inclusive) with their primary, and every node seen."""

    ranges: tuple[tuple[int, int, Address], ...]
    nodes: frozenset[Address]

    @property
    def primaries(self) -> frozenset[Address]:
        return frozenset(owner for _, _, owner in self.ranges)

    def owner(self, slot_number: int) -> Address | None:
        i = bisect.bisect_right([start for start, _, _ in self.ranges], slot_number) - 1
        if i >= 0 and self.ranges[i][1] >= slot_number:
            return self.ranges[i][2]
        return None


def parse_slots(reply: list[list[object]], asked: Address) -> Topology:
    """A CLUSTER SLOTS reply: [[start, end, [host, port, id, ...], replica...], ...]."""
    ranges, nodes = [], {asked}
    for start, end, *members in reply:
        addresses = [_address(member, asked) for member in members]
        ranges.append((int(start), int(end), addresses[0]))  # type: ignore[call-overload]
        nodes.update(addresses)
    return Topology(tuple(sorted(ranges)), frozenset(nodes))


def _address(member: object, asked: Address) -> Address:
    host, port = member[0], member[1]  # type: ignore[index]
    host = host.decode() if isinstance(host, bytes) else str(host)
    return (host or asked[0], int(port))  # an empty host means "the node you asked"


async def read_topology(candidates: Iterable[Address]) -> Topology:
    """The slot map most answering nodes agree on; raises ConnectionError when none answers."""
    answers = await asyncio.gather(*(_ask(address) for address in set(candidates)))
    votes = Counter(topology.ranges for topology in answers if topology is not None)
    if not votes:
        raise ConnectionError("no Redis Cluster node answered CLUSTER SLOTS")
    ranges = votes.most_common(1)[0][0]
    nodes = frozenset().union(*(t.nodes for t in answers if t is not None))
    return Topology(ranges, nodes)


async def _ask(address: Address) -> Topology | None:
    client = Redis(host=address[0], port=address[1], socket_connect_timeout=READ_TIMEOUT,
                   socket_timeout=READ_TIMEOUT, retry=Retry(NoBackoff(), 0), protocol=2)
    try:
        return parse_slots(await client.execute_command("CLUSTER SLOTS"), address)
    except (RedisError, OSError) as exc:
        log.debug("CLUSTER SLOTS from %s failed: %r", address_name(address), exc)
        return None
    finally:
        await client.aclose()
