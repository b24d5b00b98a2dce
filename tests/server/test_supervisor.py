"""Supervised background tasks restart after failures, and their state is visible: the
Supervisor itself, then the tasks of a running app (bus listener, dispatcher, reconciler)."""

from __future__ import annotations

import asyncio
from typing import Any

from chatserver.app import create_app
from chatserver.appkeys import HUB, SUPERVISOR
from chatserver.bus.redis import LISTENER_TASK
from chatserver.config import Settings
from chatserver.realtime.context import RECHECK_TASK, STALE_RUNS_TASK
from chatserver.realtime.hub import RECONCILE_TASK
from chatserver.realtime.presence import REFRESH_TASK
from chatserver.server.memory import TRIM_TASK
from chatserver.server.supervisor import Supervisor, TaskState
from chatserver.services.streams import IDLE_SWEEP_TASK
from chatserver.webhooks.context import DISPATCHER_TASK
from tests.realtime.helpers import WAIT
from tests.redis_server import RedisServer


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


# --- the tasks of a running app ---------------------------------------------------------------


async def until_ready(client: Any, check: Any) -> Any:
    """Poll /readyz until `check(body)`; every answer meanwhile must be 200 (the bus and its
    listener are reported, never required)."""
    async def poll() -> Any:
        while True:
            resp = await client.get("/readyz")
            body = await resp.json()
            assert resp.status == 200, body
            if check(body):
                return body
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), WAIT)


def listener_is(state: str) -> Any:
    return lambda body: body["tasks"][LISTENER_TASK]["state"] == state


async def test_readyz_lists_every_supervised_task(
    settings: Settings, aiohttp_client: Any, redis_server: RedisServer
) -> None:
    client = await aiohttp_client(create_app(settings.replace(redis={"url": redis_server.url})))
    body = await until_ready(client, listener_is("running"))
    tasks = body["tasks"]
    assert set(tasks) == {LISTENER_TASK, DISPATCHER_TASK, RECONCILE_TASK, RECHECK_TASK,
                          REFRESH_TASK, TRIM_TASK, IDLE_SWEEP_TASK, STALE_RUNS_TASK}
    assert all(t["state"] == "running" and t["restarts"] == 0 for t in tasks.values())
    assert {name for name, t in tasks.items() if not t["required"]} == {LISTENER_TASK,
                                                                         REFRESH_TASK, TRIM_TASK}


async def test_reconciler_restarts_after_an_unexpected_error(
    settings: Settings, aiohttp_client: Any
) -> None:
    config = settings.replace(realtime={"reconcile_interval": 0.05})
    client = await aiohttp_client(create_app(config))
    hub = client.server.app[HUB]
    reconcile, calls = hub.reconcile, 0

    async def fails_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("unexpected")
        await reconcile()

    hub.reconcile = fails_once  # the task body's step, not a service: Postgres stays real
    health = client.server.app[SUPERVISOR].health[RECONCILE_TASK]

    async def until_reconciled_after_restart() -> None:
        while calls < 2:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(until_reconciled_after_restart(), WAIT)
    assert (health.restarts, health.last_error) == (1, "RuntimeError: unexpected")
    assert health.state is TaskState.RUNNING


async def test_redis_down_backs_the_listener_off_and_readiness_holds(
    settings: Settings, aiohttp_client: Any
) -> None:
    redis = RedisServer().start()
    try:
        config = settings.replace(redis={"url": redis.url}, realtime={"bus_backoff_max": 0.5})
        client = await aiohttp_client(create_app(config))
        await until_ready(client, lambda body: body["bus"]["state"] == "ok")
        redis.kill()
        body = await until_ready(client, listener_is("backing_off"))
        assert body["status"] == "ready" and body["tasks"][LISTENER_TASK]["last_error"]
        redis.start()
        body = await until_ready(
            client, lambda body: listener_is("running")(body) and body["bus"]["state"] == "ok"
        )
        assert body["tasks"][LISTENER_TASK]["restarts"] >= 1
    finally:
        redis.kill()
