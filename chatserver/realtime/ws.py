"""The websocket endpoint /ws/conversations/{id}: authenticate, replay, then live frames.

Refusals happen after the upgrade, with a close code a browser can read: 4401 bad credentials,
4429 too many failed authentications from the client's address (`[limits]
failed_auths_per_second_per_address`, checked before the credential is looked at),
4404 unknown conversation, 4400 bad request (e.g. `since` above the conversation's last seq),
4403 an Origin that is not allowed, 1013 and 4429 too many sockets (see `guard`), 1008 a flood.
1013 (try again later) while the database is unreachable. A frame that cannot be stored then gets
an `unavailable` error frame with `retry_after`, and the socket stays.
With `since`, the streams still open are sent too (also those at or below `since`), and each
socket then gets only the deltas past the text it was sent (`SocketSender.go_live`).
Client frames are handled in the order read, up to `[limits] socket_frames_in_flight` at once
(`chatserver.realtime.inbound`); a broken frame gets an error frame and the socket stays.
The socket always leaves its room and the presence list in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import asyncpg
from aiohttp import WSCloseCode, WSMsgType, web

from chatserver.appkeys import (
    AUTH_THROTTLE,
    CONVERSATIONS,
    DB_POOL,
    HUB,
    KEY_CACHE,
    METRICS,
    PARTICIPANTS,
    PRESENCE,
    RUNS,
    SETTINGS,
    SOCKETS,
    TOKENS,
)
from chatserver.auth.tokens import authenticate
from chatserver.config import RealtimeSettings
from chatserver.db.errors import UNAVAILABLE_ERRORS
from chatserver.models import StreamState, message_json
from chatserver.problems import Problem
from chatserver.realtime.frames import answered_frame, frame, message_frame, run_frame
from chatserver.realtime.guard import (
    CLOSE_FORBIDDEN_ORIGIN,
    OpenSocket,
    socket_origin_allowed,
)
from chatserver.realtime.inbound import UNAVAILABLE_REASON, Session, close_for, receive
from chatserver.realtime.presence import OBSERVER_PREFIX
from chatserver.realtime.sendqueue import SocketSender
from chatserver.services import history
from chatserver.validation import BIGINT_MAX, DECIMAL_ID, parse_hex_id

log = logging.getLogger(__name__)

SUBPROTOCOL = "chatserver.v1"
BEARER_PROTOCOL_PREFIX = "bearer."
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400
CLOSED_STREAM = 2**31  # a replayed stream that is closed: no delta of it is sent after
CLOSE_THROTTLED = 4429


class Refusal(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def credential(request: web.Request) -> str | None:
    """From `Authorization: Bearer`, a `bearer.<token>` subprotocol or `?token=`, in this order."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for offered in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        offered = offered.strip()
        if offered.startswith(BEARER_PROTOCOL_PREFIX):
            return offered[len(BEARER_PROTOCOL_PREFIX):]
    return request.query.get("token") or None


def parse_since(request: web.Request) -> int | None:
    text = request.query.get("since")
    if text is None:
        return None
    # ASCII digits only: str.isdigit() also takes "²" and "①", which int() then refuses.
    if DECIMAL_ID.fullmatch(text) is None or int(text) > BIGINT_MAX:
        raise Refusal(CLOSE_BAD_REQUEST, "since must be a non-negative integer")
    return int(text)


async def open_session(request: web.Request) -> tuple[Session, int]:
    """Who is connecting to which conversation, and its last seq; Refusal when not allowed."""
    app = request.app
    origin = request.headers.get("Origin")
    if not socket_origin_allowed(app[SETTINGS].realtime.allowed_origins, origin):
        raise Refusal(CLOSE_FORBIDDEN_ORIGIN, "origin not allowed")
    try:
        conversation_id = parse_hex_id(request.match_info["conversation_id"])
    except Problem:
        raise Refusal(CLOSE_NOT_FOUND, "conversation not found") from None
    # An address that failed too often is refused before its credential costs a lookup.
    address, throttle = request.remote or "", app[AUTH_THROTTLE]
    if throttle.wait(address):
        app[METRICS].rate_limited.labels("failed_auths_per_address").inc()
        raise Refusal(CLOSE_THROTTLED, "too many failed authentications from this address")
    cred = credential(request)
    who = await authenticate(app[DB_POOL], app[TOKENS], cred, app[KEY_CACHE]) if cred else None
    if who is None:
        if cred:
            throttle.take(address)
        raise Refusal(CLOSE_UNAUTHORIZED, "missing, unknown, expired or revoked credentials")
    try:
        row = await app[CONVERSATIONS].get_row(who, conversation_id)
    except Problem:
        raise Refusal(CLOSE_NOT_FOUND, "conversation not found") from None
    since = parse_since(request)
    if since is not None and since > row["last_seq"]:
        raise Refusal(CLOSE_BAD_REQUEST, f"since is above the last seq ({row['last_seq']})")
    try:
        seat = await app[PARTICIPANTS].seat(who, conversation_id)
    except Problem as problem:  # a token whose participant was removed
        raise Refusal(CLOSE_UNAUTHORIZED, problem.detail or "participant removed") from None
    return Session(who, conversation_id, since, address, seat), row["last_seq"]


async def conversation_socket(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[SETTINGS].realtime
    ws = web.WebSocketResponse(
        protocols=(SUBPROTOCOL,), heartbeat=settings.heartbeat or None, compress=settings.compress,
        max_msg_size=settings.max_frame_bytes, timeout=settings.close_timeout,
        autoping=False,  # pings are answered by `inbound.receive`, within the frame budget
    )
    await ws.prepare(request)
    try:
        session, _ = await open_session(request)
    except Refusal as refusal:
        await ws.close(code=refusal.code, message=refusal.reason.encode())
        return ws
    except UNAVAILABLE_ERRORS as exc:
        log.warning("websocket refused, the database is unavailable: %r", exc)
        await close_quietly(ws, WSCloseCode.TRY_AGAIN_LATER, UNAVAILABLE_REASON, settings)
        return ws
    sender = SocketSender(ws, settings.send_queue_size, close_timeout=settings.close_timeout,
                          byte_limit=settings.send_queue_bytes,
                          transport=request.transport,  # type: ignore[arg-type]
                          flusher=request.app[HUB].flusher)
    admitted = OpenSocket(session.conversation_id, session.principal, sender, session.seat)
    refused = request.app[SOCKETS].admit(admitted)
    if refused is not None:
        await ws.close(code=refused[0], message=refused[1].encode())
        return ws
    try:
        await serve(request.app, ws, sender, session)
    except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
        log.warning("websocket on %s failed: %r", session.conversation_id.hex, exc)
        await close_quietly(ws, *close_for(exc), settings)
    finally:
        request.app[SOCKETS].discard(admitted)
    return ws


async def close_quietly(
    ws: web.WebSocketResponse, code: int, reason: str, settings: RealtimeSettings
) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
        async with asyncio.timeout(settings.close_timeout):
            await ws.close(code=code, message=reason.encode())


async def serve(
    app: web.Application, ws: web.WebSocketResponse, sender: SocketSender, session: Session
) -> None:
    hub, presence = app[HUB], app[PRESENCE]
    cid = session.conversation_id
    observer = session.seat is not None and session.seat.observer
    socket_id = (OBSERVER_PREFIX if observer else "") + uuid.uuid4().hex
    seen = {"observer": True} if observer else {}
    joined = present = False
    try:
        delivered = await hub.join(cid, sender)
        joined = True
        # Live frames above `delivered` wait in the sender while the replay reads Postgres, which
        # already holds everything up to `delivered`: together they leave no gap.
        last, cursors = delivered, dict[str, int]()
        if session.since is not None:
            last, cursors = await replay(app, ws, session)
        await ws.send_frame(frame("ready", conversation_id=cid.hex, last_seq=last), WSMsgType.TEXT)
        sender.go_live(last, cursors, hub.catch_up(cid, cursors))
        await presence.add(cid, socket_id, session.user)
        present = True
        members, observers = await presence.roster(cid)
        sender.push(frame("presence", members=members, observers=observers))
        await hub.ephemeral(cid, frame("presence.join", user=session.user, **seen))
        await receive(app, ws, sender, session)
    finally:
        if joined:
            await hub.leave(cid, sender)
        await sender.stop()
        if present:
            await presence.remove(cid, socket_id)
            await hub.ephemeral(cid, frame("presence.leave", user=session.user, **seen))


async def replay(
    app: web.Application, ws: web.WebSocketResponse, session: Session
) -> tuple[int, dict[str, int]]:
    """Send the streams still open up to `since`, then every message above it, in their current
    state, then the current state of every run and answered action that changed at or after
    `since`. The highest seq sent (or since), and how far each streamed message's text reached
    (a closed one: all of it)."""
    last = session.since or 0
    cursors: dict[str, int] = {}
    pool = app[DB_POOL]
    for row in await history.open_streams(pool, session.conversation_id, last):
        await send_replayed(ws, row, cursors)
    async for rows in history.pages_after(pool, session.conversation_id, last):
        for row in rows:
            await send_replayed(ws, row, cursors)
            last = row["seq"]
    runs, answered = await app[RUNS].changed_since(session.conversation_id, session.since or 0)
    for run in runs:
        await ws.send_frame(run_frame(run), WSMsgType.TEXT)
    for message in answered:
        await ws.send_frame(answered_frame(message), WSMsgType.TEXT)
    return last, cursors


async def send_replayed(ws: web.WebSocketResponse, row: Any, cursors: dict[str, int]) -> None:
    if row["stream_state"] is not None:
        open_ = row["stream_state"] == StreamState.OPEN
        cursors[row["id"].hex] = row["stream_next_index"] if open_ else CLOSED_STREAM
    await ws.send_frame(message_frame(message_json(row)), WSMsgType.TEXT)
