"""FramePipeline: frames start in the order read, at most `limit` at once, a failure closes."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from chatserver.realtime.inbound import FramePipeline


async def test_frames_start_in_order_and_at_most_limit_run_at_once() -> None:
    started: list[int] = []
    running = 0
    most = 0
    release = asyncio.Event()

    async def handle(n: int) -> None:
        nonlocal running, most
        started.append(n)
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1

    pipeline = FramePipeline(3, on_failure=lambda exc: None)
    reader = asyncio.create_task(_start_all(pipeline, [handle(n) for n in range(10)]))
    await asyncio.sleep(0.05)
    assert started == [0, 1, 2] and not reader.done()  # the fourth frame waits for room
    release.set()
    await asyncio.wait_for(reader, 5)
    await asyncio.wait_for(pipeline.finish(), 5)
    assert started == list(range(10)) and most == 3


async def _start_all(pipeline: FramePipeline, handlers: list[Coroutine[Any, Any, None]]) -> None:
    for handler in handlers:
        await pipeline.start(handler)


async def test_a_failure_is_reported_once_and_raised_by_finish() -> None:
    failures: list[BaseException] = []

    async def fail(message: str) -> None:
        raise RuntimeError(message)

    pipeline = FramePipeline(4, on_failure=failures.append)
    await pipeline.start(fail("first"))
    await asyncio.sleep(0)
    await pipeline.start(fail("second"))
    with pytest.raises(RuntimeError, match="first"):
        await asyncio.wait_for(pipeline.finish(), 5)
    assert [str(e) for e in failures] == ["first"]
