"""Supervised background tasks: restarted with capped backoff when they fail, health on record.

Every long-running loop of an instance (bus listener, webhook dispatcher, reconciliation, ...) runs
under the app's Supervisor. A task that raises is logged and started again after a backoff that
doubles up to a cap; `/readyz` and `/metrics` read each task's state from here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger("chatserver.supervisor")

TaskFactory = Callable[[], Awaitable[None]]


class TaskState(StrEnum):
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


@dataclass
class TaskHealth:
    name: str
    state: TaskState = TaskState.RUNNING
    restarts: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.monotonic)

    def as_json(self) -> dict[str, object]:
        return {"state": self.state.value, "restarts": self.restarts, "last_error": self.last_error}


class Supervisor:
    def __init__(self, *, initial_backoff: float = 0.1, max_backoff: float = 10.0) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.health: dict[str, TaskHealth] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, factory: TaskFactory) -> None:
        """Run `factory()` until the supervisor closes; a return or an exception restarts it."""
        if name in self._tasks:
            raise ValueError(f"task {name!r} is already supervised")
        self.health[name] = TaskHealth(name)
        self._tasks[name] = asyncio.create_task(self._run(name, factory), name=name)

    async def _run(self, name: str, factory: TaskFactory) -> None:
        health = self.health[name]
        backoff = self.initial_backoff
        while True:
            health.state = TaskState.RUNNING
            health.started_at = time.monotonic()
            try:
                await factory()
                health.last_error = "returned unexpectedly"
                log.error("task %s returned; restarting", name)
            except asyncio.CancelledError:
                health.state = TaskState.STOPPED
                raise
            except Exception as exc:
                health.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("task %s failed; restarting in %.1fs", name, backoff)
            health.restarts += 1
            health.state = TaskState.BACKING_OFF
            # A run that lasted long resets the backoff; a crash loop grows it to the cap.
            if time.monotonic() - health.started_at > self.max_backoff:
                backoff = self.initial_backoff
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.max_backoff)

    def healthy(self) -> bool:
        return all(h.state is TaskState.RUNNING for h in self.health.values())

    def report(self) -> dict[str, dict[str, object]]:
        return {name: h.as_json() for name, h in self.health.items()}

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
