"""The hub: this instance's rooms (conversation -> local sockets), ordered delivery and gap filling.

Every message reaches a room twice at most: directly when this instance committed it, or from the
bus when another did; and from Postgres when it is late. A room keeps the next seq it expects and
delivers strictly in seq order: an early arrival waits `gap_wait` seconds for the missing ones, then
the room reads them from Postgres. A periodic reconciliation compares every active room with its
conversation's `last_seq` (one query for all rooms) and fills what an instance committed but never
published; it also runs at once whenever the bus reconnects. It is the Supervisor's "hub-reconcile"
task: restarted with backoff if it fails in a way it does not expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import asyncpg
import orjson

from chatserver.bus import Bus
from chatserver.config import RealtimeSettings
from chatserver.db.errors import TRANSIENT_ERRORS
from chatserver.models import message_json
from chatserver.realtime.frames import (
    DeltaOutgoing,
    Envelope,
    Kind,
    Outgoing,
    answered_frame,
    delta_payload,
    message_frame,
    message_id_of,
    parse_delta_payload,
    participant_frame,
    read_frame,
    run_frame,
    updated_frame,
)
from chatserver.realtime.reads import ReadCoalescer
from chatserver.realtime.roomstreams import RoomStreams
from chatserver.realtime.sendqueue import Flusher
from chatserver.server.supervisor import Supervisor
from chatserver.services import history
from chatserver.store import conversations as conversation_store
from chatserver.store import streams as stream_store

log = logging.getLogger(__name__)

RECONCILE_TASK = "hub-reconcile"


class DeliveryObserver(Protocol):
    """Told once per message a room delivers: its frame and how many local sockets got it."""

    def __call__(self, frame: bytes, sockets: int) -> None: ...


class DeltaObserver(Protocol):
    """Told once per delta frame a room delivers: how many deltas, to how many sockets."""

    def __call__(self, deltas: int, sockets: int) -> None: ...


class Member(Protocol):
    """A local socket as the hub sees it."""

    def offer(self, kind: Kind, seq: int, frame: Outgoing) -> None: ...

    async def shut(self, code: int, reason: str) -> None: ...


class Room:
    """One conversation's local sockets and its delivery cursor."""

    def __init__(
        self, conversation_id: uuid.UUID, on_message: DeliveryObserver | None = None,
        on_deltas: DeltaObserver | None = None, read_interval: float = 1.0,
    ) -> None:
        self.on_message = on_message  # metrics: (frame, sockets) once per message delivered
        self.on_deltas = on_deltas
        # A read frame, once coalesced, waits like an update for the message it names.
        self.reads = ReadCoalescer(read_interval, self.update)
        self.id = conversation_id
        self.topic = conversation_id.hex
        self.members: set[Member] = set()
        self.delivered: int | None = None  # None until the room has read last_seq
        self.initialized = asyncio.Event()
        self.early: dict[int, bytes] = {}
        self.deferred_updates: list[tuple[int, bytes]] = []
        self.fill_lock = asyncio.Lock()
        self.gap_timer: asyncio.TimerHandle | None = None
        self.streams = RoomStreams()
        self.emit_due = False  # an emit of taken deltas waits for the next flush
        self.stream_timers: dict[str, asyncio.TimerHandle] = {}

    def broadcast(self, kind: Kind, seq: int, frame: bytes) -> None:
        # One Outgoing per frame: its wire bytes are built once and shared by every socket.
        outgoing = Outgoing(frame, ephemeral=kind is Kind.EPHEMERAL)
        for member in self.members:
            member.offer(kind, seq, outgoing)
        if kind is Kind.MESSAGE and self.on_message is not None:
            self.on_message(frame, len(self.members))

    def accept(self, seq: int, frame: bytes) -> bool:
        """Take message `seq`; True when a gap is left behind it (something is missing)."""
        if self.delivered is None:
            self.early[seq] = frame
            return False
        if seq <= self.delivered:
            return False
        self.early[seq] = frame
        self._advance()
        return bool(self.early)

    def start(self, last_seq: int, open_streams: Sequence[Any] = ()) -> bool:
        self.streams.start(last_seq, open_streams)
        self.delivered = last_seq
        self.initialized.set()
        self._advance()
        return bool(self.early)

    def _advance(self) -> None:
        assert self.delivered is not None
        for seq in [s for s in self.early if s <= self.delivered]:
            del self.early[seq]
        while (frame := self.early.pop(self.delivered + 1, None)) is not None:
            self.delivered += 1
            self.broadcast(Kind.MESSAGE, self.delivered, frame)
        if self.streams.has_unsent():
            self.emit_deltas()  # deltas after their message, before any update of it
        self._flush_updates()

    def emit_deltas(self) -> None:
        """Send every stream's taken deltas whose message went out: one frame per stream."""
        self.emit_due = False
        if self.delivered is None:
            return
        for outgoing in self.streams.unsent(self.delivered):
            for member in self.members:
                member.offer(Kind.DELTA, outgoing.seq, outgoing)
            if self.on_deltas is not None:
                self.on_deltas(len(outgoing.texts), len(self.members))

    def close_stream(self, seq: int, frame: bytes) -> None:
        """A stream closed: its last deltas go out, then the final message (`message.updated`)."""
        message_id = message_id_of(frame)
        self.streams.close(message_id)
        timer = self.stream_timers.pop(message_id, None)
        if timer is not None:
            timer.cancel()
        self.emit_deltas()
        self.update(seq, frame)

    def update(self, seq: int, frame: bytes) -> None:
        self.deferred_updates.append((seq, frame))
        self._flush_updates()

    def _flush_updates(self) -> None:
        # An update waits until its message went out, so no socket sees a change before the message.
        if self.delivered is None or not self.deferred_updates:
            return
        waiting = []
        for seq, frame in self.deferred_updates:
            if seq <= self.delivered:
                self.broadcast(Kind.UPDATE, seq, frame)
            else:
                waiting.append((seq, frame))
        self.deferred_updates = waiting


class Hub:
    def __init__(
        self, pool: asyncpg.Pool, bus: Bus, settings: RealtimeSettings, supervisor: Supervisor,
        *, on_message: DeliveryObserver | None = None, flush_interval: float = 0.0,
        on_deltas: DeltaObserver | None = None,
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.settings = settings
        self.supervisor = supervisor
        self.node = uuid.uuid4().hex
        self.flusher = Flusher(flush_interval)  # each local socket's queued frames, one write
        self.rooms: dict[uuid.UUID, Room] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconcile_now = asyncio.Event()
        self.on_message = on_message  # passed to every room (see Room.on_message)
        self.on_deltas = on_deltas

    async def start(self) -> None:
        await self.bus.connect(self, self.supervisor)
        self.supervisor.start(RECONCILE_TASK, self._reconcile_loop)

    async def close(self) -> None:
        await self.supervisor.stop(RECONCILE_TASK)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for room in self.rooms.values():
            if room.gap_timer is not None:
                room.gap_timer.cancel()
        await self.bus.close()

    async def shut_all(self, code: int, reason: str) -> None:
        """Close every local socket (on shutdown: 1001 going away)."""
        members = [m for room in self.rooms.values() for m in room.members]
        await asyncio.gather(*(m.shut(code, reason) for m in members), return_exceptions=True)

    # --- sockets joining and leaving -------------------------------------------------------------

    async def join(self, conversation_id: uuid.UUID, member: Member) -> int:
        """Add a socket to its room; the room's delivered seq (live frames above it follow)."""
        room = self.rooms.get(conversation_id)
        if room is None:
            room = self.rooms[conversation_id] = Room(conversation_id, self.on_message,
                                                      self.on_deltas,
                                                      self.settings.read_frame_interval)
            room.members.add(member)
            await self._open(room)
        else:
            room.members.add(member)
            await room.initialized.wait()
        if room.delivered is None:  # the socket that opened the room failed to
            room.members.discard(member)
            raise ConnectionError(f"room {room.topic} could not be opened")
        return room.delivered

    async def _open(self, room: Room) -> None:
        # Follow the topic before reading last_seq, so nothing published in between is lost.
        try:
            await self.bus.subscribe(room.topic)
            async with self.pool.acquire() as conn:
                rows = await conversation_store.get_last_seqs(conn, [room.id])
                # After last_seq: a stream opened in between is above it, or in this list.
                open_streams = await stream_store.get_open_cursors(conn, [room.id])
        except BaseException:
            self.rooms.pop(room.id, None)
            room.initialized.set()
            raise
        last_seq = rows[0]["last_seq"] if rows else 0
        if room.start(last_seq, open_streams):
            self._schedule_gap_fill(room)

    async def leave(self, conversation_id: uuid.UUID, member: Member) -> None:
        room = self.rooms.get(conversation_id)
        if room is None:
            return
        room.members.discard(member)
        if not room.members and room.initialized.is_set():
            del self.rooms[conversation_id]
            room.reads.close()
            if room.gap_timer is not None:
                room.gap_timer.cancel()
            for timer in room.stream_timers.values():
                timer.cancel()
            await self.bus.unsubscribe(room.topic)

    # --- publishing (called after commit) --------------------------------------------------------

    async def message_created(self, message: dict[str, Any]) -> None:
        await self._publish(message["conversation_id"], Kind.MESSAGE, message["seq"],
                            message_frame(message))

    async def message_updated(self, message: dict[str, Any]) -> None:
        stream = message.get("stream")
        kind = Kind.CLOSE if stream is not None and stream["state"] != "open" else Kind.UPDATE
        await self._publish(message["conversation_id"], kind, message["seq"],
                            updated_frame(message))

    # A run change or an answer is an UPDATE at the conversation's last_seq when it committed:
    # every socket gets it after that message and before any later one.
    async def run_updated(self, run: dict[str, Any]) -> None:
        await self._publish(run["conversation_id"], Kind.UPDATE, run["seq"], run_frame(run))

    async def action_answered(self, message: dict[str, Any]) -> None:
        await self._publish(message["conversation_id"], Kind.UPDATE,
                            message["action"]["answered_seq"], answered_frame(message))

    async def stream_deltas(
        self, conversation_id: uuid.UUID, message_id: uuid.UUID, seq: int, index: int,
        texts: list[str],
    ) -> None:
        await self._publish(conversation_id.hex, Kind.DELTA, seq,
                            delta_payload(message_id.hex, index, texts))

    def catch_up(self, conversation_id: uuid.UUID, cursors: dict[str, int]) -> list[DeltaOutgoing]:
        """For a socket that replayed these streams up to these indexes: the deltas from there
        that its room has taken (sent before any live delta)."""
        room = self.rooms.get(conversation_id)
        if room is None:
            return []
        frames = (room.streams.catch_up(mid, index) for mid, index in cursors.items())
        return [f for f in frames if f is not None]

    async def ephemeral(self, conversation_id: uuid.UUID, frame: bytes) -> None:
        await self._publish(conversation_id.hex, Kind.EPHEMERAL, 0, frame)

    # --- the participants' port (ParticipantEvents), called after commit -------------------------

    async def participant_joined(self, conversation_id: uuid.UUID, participant: dict[str, Any]
                                 ) -> None:
        await self.ephemeral(conversation_id, participant_frame("participant.joined", participant))

    async def participant_left(self, conversation_id: uuid.UUID, participant: dict[str, Any]
                               ) -> None:
        await self.ephemeral(conversation_id, participant_frame("participant.left", participant))

    async def read_marked(self, conversation_id: uuid.UUID, participant_id: str, seq: int) -> None:
        await self._publish(conversation_id.hex, Kind.READ, seq, read_frame(participant_id, seq))

    async def _publish(self, topic: str, kind: Kind, seq: int, frame: bytes) -> None:
        # Local sockets first, so they get it even when the bus is down; then exactly one publish.
        self._dispatch(uuid.UUID(hex=topic), kind, seq, frame)
        await self.bus.publish(topic, Envelope(self.node, kind, seq, frame).encode())

    # --- the bus calls these ---------------------------------------------------------------------

    def on_payload(self, topic: str, payload: bytes) -> None:
        try:
            envelope = Envelope.decode(payload)
            conversation_id = uuid.UUID(hex=topic)
        except ValueError:
            log.warning("dropped a malformed bus payload on %s", topic)
            return
        if envelope.node != self.node:
            self._dispatch(conversation_id, envelope.kind, envelope.seq, envelope.frame)

    def on_reconnect(self) -> None:
        log.info("bus reconnected; reconciling %d rooms from Postgres", len(self.rooms))
        self._reconcile_now.set()

    def _dispatch(self, conversation_id: uuid.UUID, kind: Kind, seq: int, frame: bytes) -> None:
        room = self.rooms.get(conversation_id)
        if room is None:
            return
        if kind is Kind.MESSAGE:
            if room.accept(seq, frame):
                self._schedule_gap_fill(room)
        elif kind is Kind.DELTA:
            self._take_deltas(room, seq, frame)
        elif kind is Kind.UPDATE:
            room.update(seq, frame)
        elif kind is Kind.CLOSE:
            room.close_stream(seq, frame)
        elif kind is Kind.READ:
            room.reads.offer(orjson.loads(frame)["participant"], seq, frame)
        else:
            room.broadcast(kind, seq, frame)

    def _take_deltas(self, room: Room, seq: int, payload: bytes) -> None:
        message_id, index, texts = parse_delta_payload(payload)
        if room.streams.take(message_id, seq, index, texts):
            self._schedule_stream_fill(room, message_id)
        if not room.emit_due and room.streams.has_unsent():
            room.emit_due = True
            self.flusher.defer(room.emit_deltas)  # deltas taken until the flush: one frame

    # --- filling gaps from Postgres --------------------------------------------------------------

    def _schedule_gap_fill(self, room: Room) -> None:
        if room.gap_timer is None:
            loop = asyncio.get_running_loop()
            room.gap_timer = loop.call_later(self.settings.gap_wait, self._gap_due, room)

    def _gap_due(self, room: Room) -> None:
        room.gap_timer = None
        if room.early and self.rooms.get(room.id) is room:
            log.info("gap in %s after seq %s; filling from Postgres", room.topic, room.delivered)
            self._spawn(self.fill(room))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def fill(self, room: Room, up_to: int | None = None) -> None:
        """Read from Postgres every message after the room's cursor (up to `up_to`) and deliver."""
        async with room.fill_lock:
            try:
                await self._fill_pages(room, up_to)
            except TRANSIENT_ERRORS as exc:
                log.warning("filling %s from Postgres failed: %r", room.topic, exc)
        if room.early and self.rooms.get(room.id) is room:
            self._schedule_gap_fill(room)

    async def _fill_pages(self, room: Room, up_to: int | None) -> None:
        if room.delivered is None:
            return
        async for rows in history.pages_after(self.pool, room.id, room.delivered, up_to=up_to):
            for row in rows:
                if row["stream_state"] == "open":
                    room.streams.sent_with_text(row["id"].hex, row["seq"],
                                                row["stream_next_index"])
                room.accept(row["seq"], message_frame(message_json(row)))

    def _schedule_stream_fill(self, room: Room, message_id: str) -> None:
        if message_id not in room.stream_timers:
            loop = asyncio.get_running_loop()
            room.stream_timers[message_id] = loop.call_later(
                self.settings.gap_wait, self._stream_gap_due, room, message_id)

    def _stream_gap_due(self, room: Room, message_id: str) -> None:
        room.stream_timers.pop(message_id, None)
        if room.streams.missing(message_id) is not None and self.rooms.get(room.id) is room:
            self._spawn(self.fill_stream(room, message_id))

    async def fill_stream(self, room: Room, message_id: str) -> None:
        """Read a stream's deltas from the one it waits for on from Postgres, and take them."""
        try:
            async with self.pool.acquire() as conn:
                row = await stream_store.get_stream(conn, room.id, uuid.UUID(hex=message_id))
        except TRANSIENT_ERRORS as exc:
            log.warning("filling stream %s from Postgres failed: %r", message_id, exc)
            row = None
        missing = room.streams.missing(message_id)
        if row is not None and missing is not None and row["stream_state"] == "open":
            log.info("deltas of %s missing from %d; filling from Postgres", message_id, missing)
            content, ends = row["content"], row["stream_ends"]
            texts = [content[ends[i]:ends[i + 1]] for i in range(missing, len(ends) - 1)]
            self._take_deltas(room, row["seq"], delta_payload(message_id, missing, texts))
        elif row is not None and row["stream_state"] != "open":
            room.streams.close(message_id)  # its message.updated carries the final text
        if room.streams.missing(message_id) is not None and self.rooms.get(room.id) is room:
            self._schedule_stream_fill(room, message_id)

    # --- reconciliation --------------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can drop a cancel.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.reconcile_interval):
                    await self._reconcile_now.wait()
            self._reconcile_now.clear()
            try:
                await self.reconcile()
            except TRANSIENT_ERRORS as exc:
                log.warning("reconciliation failed: %r", exc)

    async def reconcile(self) -> None:
        """One query for every active room's last_seq; fill the rooms that fell behind."""
        rooms = [r for r in self.rooms.values() if r.delivered is not None]
        if not rooms:
            return
        async with self.pool.acquire() as conn:
            rows = await conversation_store.get_last_seqs(conn, [r.id for r in rooms])
        behind = _behind(rooms, {row["id"]: row["last_seq"] for row in rows})
        for room, last_seq in behind:
            log.info("room %s is behind (%s < %s); filling", room.topic, room.delivered, last_seq)
        await asyncio.gather(*(self.fill(room, last_seq) for room, last_seq in behind))


def _behind(rooms: Iterable[Room], last_seqs: dict[uuid.UUID, int]) -> list[tuple[Room, int]]:
    return [
        (room, last_seqs[room.id]) for room in rooms
        if room.id in last_seqs and room.delivered is not None
        and room.delivered < last_seqs[room.id]
    ]
