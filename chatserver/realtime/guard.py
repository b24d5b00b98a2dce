"""Websocket admission and policing: Origin check, socket caps, frame rate, credential re-checks.

Every refusal happens after the upgrade, as a close code a browser can read:
4403 an Origin outside `[realtime] allowed_origins`, 1013 the instance is full
(`[limits] max_sockets_per_instance`), 4429 the conversation or the team is full on this instance
(`[limits] max_sockets_per_conversation`, `max_sockets_per_team`).

Every client frame, text or control (ping, pong), takes a token of the socket's frame budget
(`[limits] socket_frames_per_second`, `socket_frame_burst`). A frame over it is dropped unread (no
JSON parsing, no pong), and the socket gets at most one `rate_limited` error frame per
`RATE_LIMITED_INTERVAL`; a socket that gets more than `[limits] socket_dropped_frames_per_second`
frames dropped within one second is flooding and is closed with 1008 (policy violation).

Each heartbeat interval one query checks the API keys of every open socket on the instance and one
the participants they write as; sockets whose key was revoked, whose token expired, or whose
participant was removed from the conversation are closed with 4401 (a participant's changed role or
name applies to the open socket from then on).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from aiohttp import WSCloseCode

from chatserver.auth.keys import Principal
from chatserver.auth.origins import origin_listed
from chatserver.config import LimitSettings
from chatserver.metrics import Metrics
from chatserver.problems import Problem
from chatserver.ratelimit import TokenBucket
from chatserver.services.participants import Seat
from chatserver.store import api_keys, participants

log = logging.getLogger(__name__)

CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_CONVERSATION_FULL = 4429
CLOSE_INSTANCE_FULL = int(WSCloseCode.TRY_AGAIN_LATER)  # 1013
CLOSE_TEAM_FULL = 4429
CLOSE_CREDENTIALS_GONE = 4401
CREDENTIALS_GONE_REASON = "credentials revoked or expired, or the participant was removed"
CLOSE_FLOODING = int(WSCloseCode.POLICY_VIOLATION)  # 1008
FLOODING_REASON = "too many frames over the rate limit"
RATE_LIMITED_INTERVAL = 1.0  # seconds between two rate_limited error frames to one socket


class Closable(Protocol):
    async def shut(self, code: int, reason: str) -> None: ...


@dataclass(eq=False)
class OpenSocket:
    """One admitted socket: whose credentials opened it, on which conversation."""

    conversation_id: uuid.UUID
    principal: Principal
    member: Closable
    seat: Seat | None = None


def socket_origin_allowed(allowed: tuple[str, ...], origin: str | None) -> bool:
    """Empty `allowed` lets any origin in; otherwise the Origin header must be listed exactly
    (clients that send no Origin, such as servers, are not browsers and are let in)."""
    return not allowed or origin is None or origin_listed(allowed, origin)


class RateLimited(Problem):
    """A socket sent frames faster than its limit; `retry_after` is in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(429, "too many frames on this socket; slow down", code="rate_limited")
        self.retry_after = math.ceil(retry_after * 1000) / 1000


class Verdict(enum.Enum):
    """What to do with one client frame."""

    HANDLE = "handle"
    DROP = "drop"  # over the rate: dropped unread
    TELL = "tell"  # dropped, and the socket gets a rate_limited error frame
    CLOSE = "close"  # flooding: close the socket with 1008


class FrameBudget:
    """One socket's frame budget: a token bucket (off when the rate is 0), the dropped frames of
    the current second, and when the socket was last told it is rate limited."""

    __slots__ = ("bucket", "counted", "flood_max", "second", "dropped", "told_at")

    def __init__(self, limits: LimitSettings, metrics: Metrics) -> None:
        rate = limits.socket_frames_per_second
        self.bucket = TokenBucket(rate, max(limits.socket_frame_burst, 1)) if rate > 0 else None
        self.counted = metrics.rate_limited.labels("socket_frames")
        self.flood_max = limits.socket_dropped_frames_per_second
        self.second = self.dropped = 0
        self.told_at = -math.inf

    def widen(self, rate: float) -> None:
        """Let the socket send up to `rate` frames per second, with a burst of one second's
        worth (a streaming agent sends a frame per delta); never narrows, never turns it off."""
        if self.bucket is not None and rate > self.bucket.rate:
            self.bucket.rate = rate
            self.bucket.burst = self.bucket.tokens = max(self.bucket.burst, rate)

    def take(self) -> tuple[Verdict, float]:
        """The verdict on the next frame, and the seconds until a frame may be handled again."""
        if self.bucket is None:
            return Verdict.HANDLE, 0.0
        now = time.monotonic()
        wait = self.bucket.take(now)
        if not wait:
            return Verdict.HANDLE, 0.0
        self.counted.inc()
        if int(now) != self.second:
            self.second, self.dropped = int(now), 0
        self.dropped += 1
        if self.flood_max and self.dropped > self.flood_max:
            return Verdict.CLOSE, wait
        if now - self.told_at >= RATE_LIMITED_INTERVAL:
            self.told_at = now
            return Verdict.TELL, wait
        return Verdict.DROP, wait


class SocketRegistry:
    """The instance's open sockets, counted per conversation and per team, with the open-sockets
    gauge. Admin keys belong to no team and count against the instance cap only."""

    def __init__(self, limits: LimitSettings, metrics: Metrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self.sockets: set[OpenSocket] = set()
        self.per_conversation: Counter[uuid.UUID] = Counter()
        self.per_team: Counter[int] = Counter()

    def admit(self, sock: OpenSocket) -> tuple[int, str] | None:
        """Add the socket, or the (close code, reason) to refuse it with."""
        per_instance = self.limits.max_sockets_per_instance
        if per_instance and len(self.sockets) >= per_instance:
            return CLOSE_INSTANCE_FULL, "this instance has no room for more sockets; retry later"
        per_conversation = self.limits.max_sockets_per_conversation
        if per_conversation and self.per_conversation[sock.conversation_id] >= per_conversation:
            return CLOSE_CONVERSATION_FULL, "too many sockets on this conversation"
        team = sock.principal.team_id
        per_team = self.limits.max_sockets_per_team
        if per_team and team is not None and self.per_team[team] >= per_team:
            return CLOSE_TEAM_FULL, "too many sockets for this team on this instance"
        self.sockets.add(sock)
        self.per_conversation[sock.conversation_id] += 1
        if team is not None:
            self.per_team[team] += 1
        self.metrics.sockets_open.inc()
        return None

    def discard(self, sock: OpenSocket) -> None:
        if sock not in self.sockets:
            return
        self.sockets.discard(sock)
        self.per_conversation[sock.conversation_id] -= 1
        if self.per_conversation[sock.conversation_id] <= 0:
            del self.per_conversation[sock.conversation_id]
        team = sock.principal.team_id
        if team is not None:
            self.per_team[team] -= 1
            if self.per_team[team] <= 0:
                del self.per_team[team]
        self.metrics.sockets_open.dec()

    async def recheck(self, pool: asyncpg.Pool) -> int:
        """Close the sockets whose key is revoked or whose token expired; how many were closed."""
        now = time.time()
        sockets = list(self.sockets)
        key_ids = list({s.principal.key_id for s in sockets if s.principal.key_id is not None})
        active: set[uuid.UUID] = set()
        seated = list({(s.conversation_id, s.seat.id) for s in sockets if s.seat is not None})
        present: dict[tuple[uuid.UUID, str], Any] = {}
        if key_ids or seated:
            async with pool.acquire() as conn:
                if key_ids:
                    active = await api_keys.active_among(conn, key_ids)
                if seated:
                    present = await participants.present_among(conn, seated)
        gone = [s for s in sockets
                if _gone(s.principal, active, now) or not _seated(s, present)]
        for sock in gone:
            self.discard(sock)
        if gone:
            log.info("closing %d websocket(s) whose credentials were revoked or expired", len(gone))
            await asyncio.gather(
                *(s.member.shut(CLOSE_CREDENTIALS_GONE, CREDENTIALS_GONE_REASON) for s in gone),
                return_exceptions=True,
            )
        return len(gone)


def _seated(sock: OpenSocket, present: dict[tuple[uuid.UUID, str], Any]) -> bool:
    """False once the socket's participant was removed; else its seat is brought up to date."""
    if sock.seat is None:
        return True
    row = present.get((sock.conversation_id, sock.seat.id))
    if row is None:
        return False
    sock.seat.role, sock.seat.name = row["role"], row["name"]
    return True


def _gone(who: Principal, active_keys: set[uuid.UUID], now: float) -> bool:
    if who.key_id is not None:
        return who.key_id not in active_keys
    return who.expires_at is not None and who.expires_at <= now
