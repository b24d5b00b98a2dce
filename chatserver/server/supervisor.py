"""Supervised background tasks: restarted with capped backoff when they fail, health on record.

Every long-running loop of an instance runs under a Supervisor: the app's (`app[SUPERVISOR]`) runs
the Redis bus listener, the webhook dispatcher, the hub's reconciliation, the socket credential
re-check and the memory trim; `chatserver worker` runs its dispatcher under one of its own. A task
that raises is logged and started again after a backoff that doubles up to a cap; a task that
returns is done.
`/readyz` and `/metrics` read each task's state from here: a required task that is not running
makes the instance not ready, an optional one (the bus listener: the instance works without
Redis) is only reported.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger(__name__)

TaskFactory = Callable[[], Awaitable[None]]


class TaskState(StrEnum):
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


@dataclass
class TaskHealth:
    name: str
    required: bool = True
    state: TaskState = TaskState.RUNNING
    restarts: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.monotonic)

    def as_json(self) -> dict[str, object]:
        return {"state": self.state.value, "restarts": self.restarts,
                "last_error": self.last_error, "required": self.required}


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait before a restart: `initial`, doubling up to `cap`; a run that lasted
    longer than `cap` starts again from `initial` (an old crash loop says nothing now)."""

    initial: float
    cap: float


class Supervisor:
    def __init__(self, *, initial_backoff: float = 0.1, max_backoff: float = 10.0) -> None:
        self.backoff = Backoff(initial_backoff, max_backoff)
        self.health: dict[str, TaskHealth] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(
        self, name: str, factory: TaskFactory, *, initial_backoff: float | None = None,
        max_backoff: float | None = None, required: bool = True,
    ) -> None:
        """Run `factory()` until it returns or the task is stopped; an exception restarts it.

        A task that is not `required` shows in the report but never makes the instance unhealthy.
        """
        if name in self._tasks:
            raise ValueError(f"task {name!r} is already supervised")
        backoff = Backoff(
            self.backoff.initial if initial_backoff is None else initial_backoff,
            self.backoff.cap if max_backoff is None else max_backoff,
        )
        self.health[name] = TaskHealth(name, required)
        self._tasks[name] = asyncio.create_task(self._run(name, factory, backoff), name=name)

    async def _run(self, name: str, factory: TaskFactory, backoff: Backoff) -> None:
        health = self.health[name]
        delay = backoff.initial
        try:
            while True:
                health.state = TaskState.RUNNING
                health.started_at = time.monotonic()
                try:
                    await factory()
                    log.info("task %s finished", name)
                    return
                except Exception as exc:
                    # A run that lasted long resets the backoff; a crash loop grows it to the cap.
                    if time.monotonic() - health.started_at > backoff.cap:
                        delay = backoff.initial
                    health.last_error = f"{type(exc).__name__}: {exc}"
                    # The traceback once per crash loop; the same failure again is one line.
                    log.error("task %s failed; restarting in %.2fs: %s", name, delay,
                              health.last_error, exc_info=delay == backoff.initial)
                health.restarts += 1
                health.state = TaskState.BACKING_OFF
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, backoff.cap)
        finally:
            health.state = TaskState.STOPPED
            self._tasks.pop(name, None)

    def healthy(self) -> bool:
        """True while every required task runs."""
        return all(h.state is TaskState.RUNNING for h in self.health.values() if h.required)

    def restarts(self, name: str) -> int:
        """How often task `name` was restarted (0 for a task never started)."""
        health = self.health.get(name)
        return 0 if health is None else health.restarts

    def report(self) -> dict[str, dict[str, object]]:
        return {name: h.as_json() for name, h in self.health.items()}

    async def stop(self, name: str) -> None:
        """Cancel one task and wait for it to end; its health stays on record as stopped."""
        task = self._tasks.get(name)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
