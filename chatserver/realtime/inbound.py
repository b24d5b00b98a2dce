"""A websocket's client frames: read, rate-limited, handled in order, answered with ack or error.

Each frame, text or control, first takes a token of the socket's frame budget
(`chatserver.realtime.guard.FrameBudget`) before anything else is done with it: over the budget
it is dropped unread, a ping is not answered, and a flood closes the socket with 1008. Pings are
answered here (the socket is made with `autoping=False`) so that they count like any frame.

A client that sends several messages without waiting for each ack (a server-side integration, a
burst of pasted lines) gets them handled together: each frame is handled by a task started in the
order the frames were read, so the messages reach the group committer in that order (and get
increasing seqs, see `chatserver.services.groupcommit`), often in one transaction. The socket is
read again only while fewer than `[limits] socket_frames_in_flight` frames are being handled.

A frame's handler answers its own errors with error frames; an exception it lets escape (a
database error, a bug) closes the socket through `on_failure` and is raised again by `finish`, as
it would have been had the frame been handled inline.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from chatserver.appkeys import (
    ACTIONS,
    AUTH_THROTTLE,
    HUB,
    MESSAGES,
    METRICS,
    PARTICIPANTS,
    SETTINGS,
    STREAMS,
)
from chatserver.auth.keys import Principal
from chatserver.db.errors import UNAVAILABLE_ERRORS, is_unavailable
from chatserver.problems import Problem, ValidationProblem, unavailable
from chatserver.realtime.frames import frame
from chatserver.realtime.guard import (
    CLOSE_FLOODING,
    FLOODING_REASON,
    FrameBudget,
    RateLimited,
    Verdict,
)
from chatserver.realtime.sendqueue import SocketSender
from chatserver.services.participants import Seat
from chatserver.services.streamstate import StreamConflict
from chatserver.validation import parse_hex_id, parse_json_object

log = logging.getLogger(__name__)

UNAVAILABLE_REASON = "database unavailable, retry later"


@dataclass(frozen=True)
class Session:
    principal: Principal
    conversation_id: uuid.UUID
    since: int | None
    address: str  # the client's, for the limits per address
    seat: Seat | None = None  # the participant this socket writes as (None: an integration key)

    @property
    def user(self) -> str:
        """The name presence and typing show: the participant's id, else the key's name."""
        return self.seat.id if self.seat is not None else self.principal.name


class FramePipeline:
    __slots__ = ("error", "limit", "on_failure", "tasks")  # one per open socket

    def __init__(self, limit: int, on_failure: Callable[[BaseException], None]) -> None:
        self.limit = max(limit, 1)
        self.on_failure = on_failure
        self.tasks: set[asyncio.Task[None]] = set()
        self.error: BaseException | None = None

    async def start(self, handling: Coroutine[Any, Any, None]) -> None:
        """Start handling a frame, after waiting for room when `limit` frames are in flight."""
        while len(self.tasks) >= self.limit:
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(handling)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved even when it is not the first (no asyncio warning)
        if error is not None and self.error is None:
            self.error = error
            self.on_failure(error)

    async def finish(self) -> None:
        """Wait for the frames in flight; raise the first failure, if any."""
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.error is not None:
            raise self.error


def close_for(exc: BaseException) -> tuple[int, str]:
    if is_unavailable(exc):
        return WSCloseCode.TRY_AGAIN_LATER, UNAVAILABLE_REASON
    return WSCloseCode.INTERNAL_ERROR, "server error, resume"


async def receive(
    app: web.Application, ws: web.WebSocketResponse, sender: SocketSender, session: Session
) -> None:
    limits = app[SETTINGS].limits
    budget = FrameBudget(limits, app[METRICS])
    pipeline = FramePipeline(limits.socket_frames_in_flight,
                             lambda exc: sender.close_soon(*close_for(exc)))
    try:
        async for msg in ws:
            verdict, wait = budget.take()
            if verdict is Verdict.CLOSE:
                log.info("closing a websocket on %s: it floods frames",
                         session.conversation_id.hex)
                # Its address opens nothing more until it has earned a full burst back.
                app[AUTH_THROTTLE].penalize(session.address, limits.failed_auth_burst_per_address)
                await sender.shut(CLOSE_FLOODING, FLOODING_REASON, hear_back=False)
                return
            if verdict is not Verdict.HANDLE:
                if verdict is Verdict.TELL:
                    sender.push(error_frame(RateLimited(wait), None))
            elif msg.type is WSMsgType.TEXT:
                await pipeline.start(handle_text(app, sender, session, msg.data, budget))
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await sender.shut(WSCloseCode.UNSUPPORTED_DATA, "text frames only")
                return
    finally:
        await pipeline.finish()


async def handle_text(
    app: web.Application, sender: SocketSender, session: Session, raw: str,
    budget: FrameBudget | None = None,
) -> None:
    client_id = None
    try:
        data = parse_json_object(raw, app[SETTINGS].server.max_json_depth)
        client_id = data.get("client_id") if isinstance(data.get("client_id"), str) else None
        kind = data.pop("type", None)
        handler = HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise Problem(400, f"type must be one of {FRAME_TYPES}", code="unknown_type",
                          invalid_params=[("type", f"must be one of {FRAME_TYPES}")])
        if await handler(app, sender, session, data) and budget is not None:
            # A socket that streams (its credential may) sends a frame per delta.
            budget.widen(app[SETTINGS].streams.deltas_per_second)
    except Problem as problem:
        sender.push(error_frame(problem, client_id))
    except UNAVAILABLE_ERRORS as exc:
        # Not acknowledged, and the socket stays: the client sends again after retry_after.
        log.warning("websocket frame refused, the database is unavailable: %r", exc)
        sender.push(error_frame(unavailable(app[SETTINGS].outages.retry_after), client_id))


async def post(
    app: web.Application, sender: SocketSender, session: Session, body: dict[str, Any]
) -> bool:
    """A `message` frame (whole, or opening a stream); whether it opened a stream."""
    service = app[MESSAGES]
    new = service.validate_new(session.principal, session.conversation_id, body,
                               seat=session.seat, type_field="message_type")
    # The socket's access to its conversation was checked when it opened.
    if new.stream:
        posted = await app[STREAMS].open(session.principal, new, checked=True)
    else:
        posted = await service.store(new)
    if posted.created:
        app[METRICS].messages_in.labels("ws").inc()
    sender.push(frame("ack", client_id=new.client_id, message=posted.message))
    return new.stream


async def append_delta(
    app: web.Application, sender: SocketSender, session: Session, body: dict[str, Any]
) -> bool:
    """A `message.delta` frame: acknowledged with the stream's next index once durable."""
    service = app[STREAMS]
    message_id = parse_hex_id(str(body.pop("message_id", "")), "message_id")
    delta = service.validate_delta(body)
    next_index = await service.append(session.principal, session.conversation_id, message_id,
                                      [delta], checked=True)
    sender.push(frame("ack", message_id=message_id.hex, next_index=next_index))
    return True


async def typing(
    app: web.Application, sender: SocketSender, session: Session, body: dict[str, Any]
) -> bool:
    if session.seat is not None and session.seat.observer:
        raise ValidationProblem([("type", "an observer may not send typing")])
    await app[HUB].ephemeral(session.conversation_id, frame("typing", user=session.user))
    return False


async def read(
    app: web.Application, sender: SocketSender, session: Session, body: dict[str, Any]
) -> bool:
    """Move this participant's read horizon; the others learn of it from `read` frames."""
    if session.seat is None:
        raise ValidationProblem([("type", "only a participant has a read horizon")])
    await app[PARTICIPANTS].mark_read(session.principal, session.conversation_id,
                                      session.seat.id, body.get("seq"))
    return False


async def update(
    app: web.Application, sender: SocketSender, session: Session, body: dict[str, Any]
) -> bool:
    """`message.update`: change a message's status/metadata as PATCH would; answered by an ack."""
    client_id = body.pop("client_id", None)
    message_id = body.pop("message_id", None)
    if not isinstance(message_id, str):
        raise ValidationProblem([("message_id", "is required (a 32-character hex id)")])
    updated = await app[MESSAGES].update(session.principal, session.conversation_id,
                                         parse_hex_id(message_id, "message_id"), body)
    sender.push(frame("ack", client_id=client_id if isinstance(client_id, str) else None,
                      message=updated))
    return False


async def answer(
    app: web.Application, sender: SocketSender, session: Session, body: dict[str, Any]
) -> bool:
    """`action.answer`: {message_id, option | values, client_id?}; ack with the message."""
    raw_id = body.pop("message_id", None)
    message_id = parse_hex_id(raw_id if isinstance(raw_id, str) else "", "message_id")
    message = await app[ACTIONS].answer(session.principal, session.conversation_id, message_id,
                                        body)
    sender.push(frame("ack", client_id=body.get("client_id"), message=message))
    return False


# A frame's handler: True when the frame streamed (opened a stream or appended to one).
Handler = Callable[[web.Application, SocketSender, Session, dict[str, Any]],
                   Coroutine[Any, Any, bool]]
HANDLERS: dict[str, Handler] = {
    "message": post, "message.delta": append_delta, "typing": typing, "read": read,
    "message.update": update, "action.answer": answer,
}
FRAME_TYPES = ", ".join(HANDLERS)


ERROR_CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               409: "conflict", 413: "too_large", 422: "idempotency_conflict",
               429: "rate_limited", 503: "unavailable"}


def error_frame(problem: Problem, client_id: str | None) -> bytes:
    fields: dict[str, Any] = {
        "code": problem.code or ERROR_CODES.get(problem.status, "error"),
        "detail": problem.detail, "client_id": client_id,
    }
    if "Retry-After" in problem.headers:
        fields["retry_after"] = int(problem.headers["Retry-After"])
    if problem.invalid_params:
        fields["invalid_params"] = [{"name": n, "reason": r} for n, r in problem.invalid_params]
    if isinstance(problem, RateLimited):
        fields["retry_after"] = problem.retry_after
    if isinstance(problem, StreamConflict) and problem.expected_index is not None:
        fields["expected_index"] = problem.expected_index
    return frame("error", **fields)
