"""Read frames of one room, coalesced: at most one per participant per interval.

The first horizon a participant marks goes out at once; later ones within the interval are held,
and only the newest is sent when the interval is over. A horizon at or below the last one sent is
dropped (horizons only move forward). Each instance coalesces what it delivers to its own sockets,
so a socket gets at most one `read` frame per participant per interval, whichever instances the
participant marked through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class ReadCoalescer:
    __slots__ = ("emit", "held", "interval", "sent", "timers")

    def __init__(self, interval: float, emit: Callable[[int, bytes], None]) -> None:
        self.interval = interval
        self.emit = emit  # (seq, frame): deliver to the room's sockets
        self.sent: dict[str, tuple[float, int]] = {}  # participant -> (when, seq) last sent
        self.held: dict[str, tuple[int, bytes]] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}

    def offer(self, participant: str, seq: int, frame: bytes) -> None:
        when, last_seq = self.sent.get(participant, (float("-inf"), -1))
        held = self.held.get(participant)
        if seq <= last_seq or (held is not None and seq <= held[0]):
            return
        now = time.monotonic()
        if participant not in self.timers and now - when >= self.interval:
            self._send(participant, seq, frame, now)
            return
        self.held[participant] = (seq, frame)
        if participant not in self.timers:
            delay = self.interval - (now - when)
            self.timers[participant] = asyncio.get_running_loop().call_later(
                delay, self._release, participant)

    def _release(self, participant: str) -> None:
        del self.timers[participant]
        held = self.held.pop(participant, None)
        if held is not None:
            self._send(participant, held[0], held[1], time.monotonic())

    def _send(self, participant: str, seq: int, frame: bytes, now: float) -> None:
        self.sent[participant] = (now, seq)
        self.emit(seq, frame)

    def close(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        self.held.clear()
