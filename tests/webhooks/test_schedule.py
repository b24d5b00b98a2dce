"""Retry decisions, Retry-After, jitter; the dispatcher's wake-up and its supervised restarts."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from chatserver.app import create_app
from chatserver.config import WebhookSettings
from chatserver.server.supervisor import Supervisor, TaskState
from chatserver.webhooks.context import DISPATCHER_TASK, DispatcherRunner
from chatserver.webhooks.dispatcher import Dispatcher
from chatserver.webhooks.schedule import Verdict, decide, jittered, parse_retry_after
from chatserver.webhooks.sender import AttemptResult
from tests.conftest import Api
from tests.realtime.helpers import WAIT
from tests.webhooks.helpers import eventually, start_receiver, webhook_settings

SETTINGS = WebhookSettings(schedule=(5.0, 300.0), jitter=0.0, backoff_floor=60.0)


def test_success_failure_and_exhaustion() -> None:
    assert decide(AttemptResult(204), 0, SETTINGS).verdict is Verdict.SUCCEEDED
    first = decide(AttemptResult(500), 0, SETTINGS)
    assert (first.verdict, first.delay) == (Verdict.RETRY, 5.0)
    assert decide(AttemptResult(500), 1, SETTINGS).delay == 300.0
    assert decide(AttemptResult(500), 2, SETTINGS).verdict is Verdict.FAILED
    assert decide(AttemptResult(302), 0, SETTINGS).verdict is Verdict.RETRY
    assert decide(AttemptResult(410), 0, SETTINGS).verdict is Verdict.GONE


@pytest.mark.parametrize("result", [
    AttemptResult(429), AttemptResult(502), AttemptResult(503), AttemptResult(504),
    AttemptResult(0, error="timed out", timed_out=True),
])
def test_backpressure_waits_at_least_the_floor(result: AttemptResult) -> None:
    assert decide(result, 0, SETTINGS).delay == 60.0
    assert decide(AttemptResult(500), 0, SETTINGS).delay == 5.0
    assert decide(AttemptResult(0, error="connection refused"), 0, SETTINGS).delay == 5.0


def test_retry_after_is_honoured_and_capped() -> None:
    assert decide(AttemptResult(429, retry_after="120"), 0, SETTINGS).delay == 120.0
    assert decide(AttemptResult(503, retry_after="10"), 0, SETTINGS).delay == 60.0
    capped = WebhookSettings(schedule=(5.0,), jitter=0.0, retry_after_max=600.0)
    assert decide(AttemptResult(429, retry_after="999999"), 0, capped).delay == 600.0
    # Only back-pressure statuses honour it.
    assert decide(AttemptResult(500, retry_after="120"), 0, SETTINGS).delay == 5.0


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_jitter_stays_within_twenty_percent() -> None:
    rng = random.Random(4)
    values = [jittered(100.0, 0.2, rng) for _ in range(500)]
    assert all(80.0 <= v <= 120.0 for v in values)
    assert len(set(values)) > 1


async def test_notify_wakes_the_dispatcher_without_polling(
    database_url: str, aiohttp_client: Any, aiohttp_server: Any, make_key: Any
) -> None:
    # With a poll interval longer than the wait, only LISTEN/NOTIFY can deliver in time.
    receiver = await start_receiver(aiohttp_server)
    client = await aiohttp_client(create_app(webhook_settings(database_url, poll_interval=600.0)))
    api = Api(client, await make_key("admin"))
    _, created, _ = await api.call(
        "POST", "/conversations",
        {"channel": "API", "config": {"callback_url": receiver.url()}}, expect=201,
    )
    await asyncio.sleep(0.2)  # let the dispatcher finish its first, empty, poll
    await api.post_message(created["id"], "wake up")
    await receiver.wait_for(1)


class Crashing:
    """A dispatcher stand-in whose main() crashes the first time, then runs until told to stop
    claiming (as the real one does on SIGTERM)."""

    runs = 0
    closed = 0

    def __init__(self) -> None:
        self.claiming = asyncio.Event()

    async def main(self) -> None:
        Crashing.runs += 1
        if Crashing.runs == 1:
            raise RuntimeError("boom")
        await self.claiming.wait()

    def stop_claiming(self) -> None:
        self.claiming.set()

    async def close(self, grace: float | None = None) -> None:
        Crashing.closed += 1


async def test_a_crashed_dispatcher_is_closed_and_restarted_until_it_stops_claiming() -> None:
    Crashing.runs = Crashing.closed = 0
    supervisor = Supervisor()
    runner = DispatcherRunner(Crashing).start(supervisor)  # type: ignore[arg-type]
    health = supervisor.health[DISPATCHER_TASK]
    await eventually(lambda: Crashing.runs == 2)
    assert Crashing.closed == 1  # the crashed one released its claims before the backoff
    assert (health.restarts, health.last_error) == (1, "RuntimeError: boom")
    assert health.state is TaskState.RUNNING and supervisor.healthy()
    # SIGTERM: main() returns, and nothing is started again to claim more.
    runner.stop_claiming()
    await eventually(lambda: health.state is TaskState.STOPPED)
    await asyncio.sleep(0.1)
    assert Crashing.runs == 2
    await runner.stop(grace=0)
    assert Crashing.closed == 2
    await supervisor.close()


async def test_dispatcher_health_is_in_readyz(client: Any) -> None:
    body = await (await client.get("/readyz")).json()
    assert body["tasks"][DISPATCHER_TASK] == {
        "state": "running", "restarts": 0, "last_error": None, "required": True,
    }


@pytest.mark.parametrize("iterations", [0, 1, 2])
async def test_a_cancel_as_the_dispatcher_wakes_is_not_lost(iterations: int) -> None:
    # The teardown hang of the first try at supervising the dispatcher: stop_claiming() (SIGTERM)
    # wakes the idle loop, and a cancel a loop iteration later (cleanup stopping the task) was
    # dropped by Python 3.11's asyncio.wait_for, so the task went on and cleanup waited forever.
    settings = WebhookSettings(poll_interval=600.0)
    dispatcher = Dispatcher(None, settings, None)  # type: ignore[arg-type]
    sleeping = asyncio.create_task(dispatcher._sleep())
    await asyncio.sleep(0)
    dispatcher.stop_claiming()
    for _ in range(iterations):
        await asyncio.sleep(0)
    accepted = sleeping.cancel()  # False when it already ended
    await asyncio.wait_for(asyncio.gather(sleeping, return_exceptions=True), WAIT)
    assert sleeping.cancelled() or not accepted
