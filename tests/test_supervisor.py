"""Supervised background tasks restart after failures, and their state is visible."""

from __future__ import annotations

import asyncio

from chatserver.supervisor import Supervisor, TaskState


async def test_failing_task_is_restarted_with_its_errors_recorded() -> None:
    supervisor = Supervisor(initial_backoff=0.01, max_backoff=0.05)
    attempts = 0
    steady = asyncio.Event()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise RuntimeError(f"boom {attempts}")
        steady.set()
        await asyncio.Event().wait()

    supervisor.start("flaky", flaky)
    await asyncio.wait_for(steady.wait(), 5)
    health = supervisor.health["flaky"]
    assert health.restarts == 2
    assert health.last_error == "RuntimeError: boom 2"
    assert health.state is TaskState.RUNNING
    assert supervisor.healthy()
    await supervisor.close()
    assert health.state is TaskState.STOPPED


async def test_backing_off_task_makes_the_instance_unhealthy() -> None:
    supervisor = Supervisor(initial_backoff=10, max_backoff=10)

    async def broken() -> None:
        raise OSError("down")

    supervisor.start("broken", broken)
    for _ in range(100):
        if supervisor.health["broken"].state is TaskState.BACKING_OFF:
            break
        await asyncio.sleep(0.01)
    assert not supervisor.healthy()
    assert supervisor.report()["broken"]["last_error"] == "OSError: down"
    await supervisor.close()
