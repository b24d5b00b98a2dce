"""The websocket endpoint /ws/conversations/{id}: authenticate, replay, then live frames.

Refusals happen after the upgrade, with a close code a browser can read: 4401 bad credentials,
4429 too many failed authentications from the client's address (`[limits]
failed_auths_per_second_per_address`, checked before the credential is looked at),
4404 unknown conversation, 4400 bad request (e.g. `since` above the conversation's last seq),
4403 an Origin that is not allowed, 1013 and 4429 too many sockets (see `guard`), 1008 a flood.
1013 (try again later) while the database is unreachable. A frame that cannot be stored then gets
an `unavailable` error frame with `retry_after`, and the socket stays.
Client frames are handled in the order read, up to `[limits] socket_frames_in_flight` at once
(`chatserver.realtime.inbound`); a broken frame gets an error frame and the socket stays.
The socket always leaves its room and the presence list in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import asyncpg
from aiohttp import WSCloseCode, WSMsgType, web

from chatserver.appkeys import (
    AUTH_THROTTLE,
    CONVERSATIONS,
    DB_POOL,
    HUB,
    KEY_CACHE,
    METRICS,
    PRESENCE,
    RUNS,
    SETTINGS,
    SOCKETS,
    TOKENS,
)
from chatserver.auth.tokens import authenticate
from chatserver.config import RealtimeSettings
from chatserver.db.errors import UNAVAILABLE_ERRORS
from chatserver.models import message_json
from chatserver.problems import Problem
from chatserver.realtime.frames import answered_frame, frame, message_frame, run_frame
from chatserver.realtime.guard import (
    CLOSE_FORBIDDEN_ORIGIN,
    OpenSocket,
    socket_origin_allowed,
)
from chatserver.realtime.inbound import UNAVAILABLE_REASON, Session, close_for, receive
from chatserver.realtime.sendqueue import SocketSender
from chatserver.services import history
from chatserver.validation import parse_hex_id

log = logging.getLogger(__name__)

SUBPROTOCOL = "chatserver.v1"
BEARER_PROTOCOL_PREFIX = "bearer."
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400
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
    if not text.isdigit() or len(text) > 18:
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
    return Session(who, conversation_id, since, address), row["last_seq"]


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
                          transport=request.transport,  # type: ignore[arg-type]
                          flusher=request.app[HUB].flusher)
    admitted = OpenSocket(session.conversation_id, session.principal, sender)
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
    socket_id = uuid.uuid4().hex
    joined = present = False
    try:
        delivered = await hub.join(cid, sender)
        joined = True
        # Live frames above `delivered` wait in the sender while the replay reads Postgres, which
        # already holds everything up to `delivered`: together they leave no gap.
        last = delivered if session.since is None else await replay(app, ws, session)
        await ws.send_frame(frame("ready", conversation_id=cid.hex, last_seq=last), WSMsgType.TEXT)
        sender.go_live(last)
        await presence.add(cid, socket_id, session.principal.name)
        present = True
        sender.push(frame("presence", members=await presence.members(cid)))
        await hub.ephemeral(cid, frame("presence.join", user=session.principal.name))
        await receive(app, ws, sender, session)
    finally:
        if joined:
            await hub.leave(cid, sender)
        await sender.stop()
        if present:
            await presence.remove(cid, socket_id)
            await hub.ephemeral(cid, frame("presence.leave", user=session.principal.name))


async def replay(app: web.Application, ws: web.WebSocketResponse, session: Session) -> int:
    """Send every message above `since` in its current state, then the current state of every
    run and answered action that changed at or after `since`; the highest seq sent (or since)."""
    last = session.since or 0
    async for rows in history.pages_after(app[DB_POOL], session.conversation_id, last):
        for row in rows:
            await ws.send_frame(message_frame(message_json(row)), WSMsgType.TEXT)
            last = row["seq"]
    runs, answered = await app[RUNS].changed_since(session.conversation_id, session.since or 0)
    for run in runs:
        await ws.send_frame(run_frame(run), WSMsgType.TEXT)
    for message in answered:
        await ws.send_frame(answered_frame(message), WSMsgType.TEXT)
    return last
