"""Supervised background tasks restart after failures, and their state is visible: the
Supervisor itself, then the tasks of a running app (bus listener, dispatcher, reconciler)."""

from __future__ import annotations

import asyncio

from chatserver.supervisor import Supervisor, TaskState


class Flaky:
    """A task body that raises `failures` times, then runs until cancelled."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.steady = asyncio.Event()

    async def __call__(self) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise RuntimeError(f"boom {self.attempts}")
        self.steady.set()
        await asyncio.Event().wait()


async def test_failing_task_is_restarted_with_its_errors_recorded() -> None:
    supervisor = Supervisor(initial_backoff=0.01, max_backoff=0.05)
    flaky = Flaky(2)
    supervisor.start("flaky", flaky)
    await asyncio.wait_for(flaky.steady.wait(), 5)
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


async def until_state(supervisor: Supervisor, name: str, state: TaskState) -> None:
    async def poll() -> None:
        while supervisor.health[name].state is not state:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 5)


async def test_stop_cancels_one_task_and_keeps_its_health() -> None:
    supervisor = Supervisor()
    supervisor.start("one", lambda: asyncio.Event().wait())
    supervisor.start("two", lambda: asyncio.Event().wait())
    await asyncio.sleep(0)
    await supervisor.stop("one")
    assert supervisor.report()["one"]["state"] == "stopped"
    assert supervisor.health["two"].state is TaskState.RUNNING
    assert not supervisor.healthy()  # a required task is not running
    await supervisor.stop("one")  # stopping again, or an unknown task, does nothing
    await supervisor.stop("unknown")
    await supervisor.close()
    assert supervisor.health["two"].state is TaskState.STOPPED


async def test_a_task_that_returns_is_done_not_restarted() -> None:
    supervisor = Supervisor(initial_backoff=0.01)
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    supervisor.start("once", once)
    await until_state(supervisor, "once", TaskState.STOPPED)
    await asyncio.sleep(0.05)
    assert (runs, supervisor.restarts("once")) == (1, 0)
    supervisor.start("once", once)  # a finished task's name may be used again
    await until_state(supervisor, "once", TaskState.STOPPED)
    assert runs == 2
    await supervisor.close()


async def test_an_optional_task_is_reported_but_never_makes_the_instance_unhealthy() -> None:
    supervisor = Supervisor(initial_backoff=10, max_backoff=10)

    async def broken() -> None:
        raise OSError("down")

    supervisor.start("optional", broken, required=False)
    await until_state(supervisor, "optional", TaskState.BACKING_OFF)
    assert supervisor.healthy()
    assert supervisor.report()["optional"] == {
        "state": "backing_off", "restarts": 1, "last_error": "OSError: down", "required": False,
    }
    await supervisor.close()


async def test_each_task_may_have_its_own_backoff() -> None:
    # The supervisor's default would wait an hour; this task's own backoff is a few milliseconds.
    supervisor = Supervisor(initial_backoff=3600, max_backoff=3600)
    flaky = Flaky(3)
    supervisor.start("fast", flaky, initial_backoff=0.001, max_backoff=0.004)
    await asyncio.wait_for(flaky.steady.wait(), 5)
    assert supervisor.restarts("fast") == 3
    await supervisor.close()


async def test_a_task_stopped_while_backing_off_is_not_started_again() -> None:
    supervisor = Supervisor(initial_backoff=0.01, max_backoff=0.01)
    attempts = 0

    async def broken() -> None:
        nonlocal attempts
        attempts += 1
        raise OSError("down")

    supervisor.start("broken", broken)
    await until_state(supervisor, "broken", TaskState.BACKING_OFF)
    await supervisor.stop("broken")
    seen = attempts
    await asyncio.sleep(0.05)
    assert attempts == seen
    assert supervisor.health["broken"].state is TaskState.STOPPED

