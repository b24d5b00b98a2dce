"""Runs and actions on the timeline (issue 17): run.updated and action.answered frames in commit
order with the messages, resume with since, action.answer frames, the reject policy over a socket,
and one winner among 20 concurrent answers across two instances (real Postgres and Redis)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from chatserver.app import create_app
from chatserver.config import Settings
from tests.conftest import Api
from tests.realtime.helpers import connect, frame_of, next_frame, ready, send
from tests.redis_server import RedisServer


def runs_path(cid: str, run_id: str = "") -> str:
    return f"/conversations/{cid}/runs" + (f"/{run_id}" if run_id else "")


async def token(api: Api, cid: str, user: str) -> str:
    _, minted, _ = await api.call("POST", f"/conversations/{cid}/tokens", {"user": user},
                                  expect=201)
    return str(minted["token"])


async def timeline(
    ws: aiohttp.ClientWebSocketResponse, count: int, runs: list[dict[str, Any]] | None = None
) -> list[tuple[str, Any]]:
    """The next `count` message and run frames: ("message", seq) or ("run", status); the runs
    are also appended to `runs`."""
    seen: list[tuple[str, Any]] = []
    while len(seen) < count:
        frame = await next_frame(ws)
        assert frame is not None
        if frame["type"] == "message":
            seen.append(("message", frame["message"]["seq"]))
        elif frame["type"] == "run.updated":
            seen.append(("run", frame["run"]["status"]))
            if runs is not None:
                runs.append(frame["run"])
    return seen


async def test_run_frames_are_ordered_with_the_messages(client: Any, make_key: Any) -> None:
    api = Api(client, await make_key("agent"))
    cid = await api.create_conversation()
    ws = await connect(client, cid, api.key)
    await ready(ws)
    await api.post_message(cid, "please summarise")
    _, run, _ = await api.call("POST", runs_path(cid), {"agent": "helper", "input_seq": 1},
                               expect=201)
    await api.call("PATCH", runs_path(cid, run["id"]), {"status": "running"}, expect=200)
    await api.post_message(cid, "working on it", type="AGENT_OUTPUT")
    await api.call("PATCH", runs_path(cid, run["id"]), {"activity": "reading"}, expect=200)
    await api.call("POST", runs_path(cid, run["id"]) + "/cancel", expect=200)
    await api.call("PATCH", runs_path(cid, run["id"]), {"status": "cancelled"}, expect=200)
    runs: list[dict[str, Any]] = []
    assert await timeline(ws, 7, runs) == [
        ("message", 1), ("run", "queued"), ("run", "running"), ("message", 2),
        ("run", "running"), ("run", "running"), ("run", "cancelled")]
    assert runs[2]["activity"] == "reading" and runs[2]["cancel_requested_at"] is None
    assert runs[3]["cancel_requested_at"] is not None  # the cancel request, before the end
    assert [r["version"] for r in runs] == [1, 2, 3, 4, 5]
    assert [r["seq"] for r in runs] == [1, 1, 2, 2, 2]
    await ws.close()


async def test_resume_with_since_gets_the_runs_and_answers_that_changed(
    client: Any, make_key: Any
) -> None:
    api = Api(client, await make_key("agent"))
    cid = await api.create_conversation()
    await api.post_message(cid, "one")
    _, old, _ = await api.call("POST", runs_path(cid), {"agent": "a"}, expect=201)
    await api.call("PATCH", runs_path(cid, old["id"]), {"status": "cancelled"}, expect=200)
    await api.post_message(cid, "two")
    _, run, _ = await api.call("POST", runs_path(cid), {"agent": "a"}, expect=201)
    await api.call("PATCH", runs_path(cid, run["id"]), {"status": "running"}, expect=200)
    asked = await api.post_message(cid, "ok?", type="AGENT_OUTPUT", run_id=run["id"],
                                   action={"kind": "confirm", "prompt": "ok?"})
    await api.call("POST", f"/conversations/{cid}/messages/{asked['id']}/answer",
                   {"option": "yes"}, expect=200)
    ws = await connect(client, cid, api.key, since=2)
    frames = []
    while (frame := await next_frame(ws)) is not None and frame["type"] != "ready":
        frames.append(frame)
    assert [f["type"] for f in frames] == ["message", "run.updated", "action.answered"]
    assert frames[0]["message"]["action"]["answer"] == {"option": "yes"}
    assert frames[1]["run"]["id"] == run["id"]
    assert frames[1]["run"]["status"] == "requires_action"
    assert frames[2]["message_id"] == asked["id"]
    assert frames[2]["action"]["answered_by"] == "agent"
    await ws.close()


async def test_answer_over_the_socket_and_reject_policy(client: Any, make_key: Any) -> None:
    api = Api(client, await make_key("agent"))
    cid = await api.create_conversation(config={"on_input_during_run": "reject"})
    _, run, _ = await api.call("POST", runs_path(cid), {"agent": "a"}, expect=201)
    user = await connect(client, cid, await token(api, cid, "alice"))
    await ready(user)
    await send(user, type="message", content="again", client_id="c1")
    error = await frame_of(user, "error")
    assert error["code"] == "run_active" and error["client_id"] == "c1"
    await api.call("PATCH", runs_path(cid, run["id"]), {"status": "running"}, expect=200)
    asked = await api.post_message(cid, "Pick one", type="AGENT_OUTPUT", run_id=run["id"],
                                   action={"kind": "choice", "prompt": "Which?", "options": [
                                       {"id": "a", "label": "A"}, {"id": "b", "label": "B"}]})
    await send(user, type="action.answer", message_id=asked["id"], option="b", client_id="x")
    # The timeline frames go out at the commit, the ack after: both come, in that order.
    seen = {}
    while "ack" not in seen:
        frame = await next_frame(user)
        assert frame is not None
        seen[frame["type"]] = frame
    ack, answered = seen["ack"], seen["action.answered"]
    assert ack["client_id"] == "x" and ack["message"]["action"]["answer"] == {"option": "b"}
    assert answered["action"]["answered_by"] == "alice" and answered["run_id"] == run["id"]
    assert seen["message.updated"]["message"]["action"]["answer"] == {"option": "b"}
    await send(user, type="action.answer", message_id=asked["id"], option="a")
    assert (await frame_of(user, "error"))["code"] == "already_answered"
    await send(user, type="action.answer", message_id="nope", option="a")
    error = await frame_of(user, "error")
    assert error["invalid_params"] == [{"name": "message_id",
                                        "reason": "must be a 32-character hex id"}]
    await user.close()


@pytest.fixture
async def two(
    settings: Settings, aiohttp_client: Any, make_key: Any, redis_server: RedisServer
) -> list[Api]:
    """Two instances on one Postgres and a real Redis, with one admin key."""
    config = settings.replace(redis={"url": redis_server.url})
    key = await make_key("admin")
    return [Api(await aiohttp_client(create_app(config)), key) for _ in range(2)]


async def test_one_winner_among_20_concurrent_answers_on_two_instances(two: list[Api]) -> None:
    a, b = two
    key = a.key
    cid = await a.create_conversation()
    _, run, _ = await a.call("POST", runs_path(cid), {"agent": "a"}, expect=201)
    await a.call("PATCH", runs_path(cid, run["id"]), {"status": "running"}, expect=200)
    asked = await a.post_message(cid, "Deploy?", type="AGENT_OUTPUT", run_id=run["id"],
                                 action={"kind": "confirm", "prompt": "Deploy?"})
    path = f"/conversations/{cid}/messages/{asked['id']}/answer"
    watcher = await connect(b.client, cid, key, since=asked["seq"])
    await ready(watcher)
    results = await asyncio.gather(*(
        (a if i % 2 else b).call("POST", path, {"option": "yes" if i % 3 else "no"})
        for i in range(20)))
    winners = [body for status, body, _ in results if status == 200]
    losers = [body for status, body, _ in results if status != 200]
    assert len(winners) == 1
    assert {(status, body["code"]) for status, body, _ in results if status != 200} == {
        (409, "already_answered")}
    assert len(losers) == 19
    answered = await frame_of(watcher, "action.answered")
    assert answered["action"]["answer"] == winners[0]["action"]["answer"]
    _, stored, _ = await b.call("GET", f"/conversations/{cid}/messages", expect=200)
    assert stored[0]["action"]["answer"] == winners[0]["action"]["answer"]
    await watcher.close()


async def test_pipelined_sends_keep_their_order_under_each_policy(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    """The policy check (a query under `reject`, and whenever the policy is not remembered) must
    not let a socket's later frame overtake an earlier one on the way to the committer."""
    app = create_app(settings.replace(limits={"socket_frames_per_second": 0,
                                              "socket_frames_in_flight": 8},
                                      runs={"policy_cache_ttl": 0.0}))
    api = Api(await aiohttp_client(app), await make_key("pipeliner"))
    for policy in ("reject", "interrupt", "allow"):
        cid = await api.create_conversation(config={"on_input_during_run": policy})
        ws = await connect(api.client, cid, api.key)
        await ready(ws)
        count = 40
        for i in range(count):
            await send(ws, type="message", content=f"m{i}", client_id=f"c{i}")
        acks: dict[str, int] = {}
        while len(acks) < count:
            got = await frame_of(ws, "ack")
            acks[got["client_id"]] = got["message"]["seq"]
        assert [acks[f"c{i}"] for i in range(count)] == list(range(1, count + 1)), policy
        await ws.close()


async def test_run_frames_from_another_instance_follow_their_message(two: list[Api]) -> None:
    a, b = two
    cid = await a.create_conversation()
    ws = await connect(b.client, cid, b.key)
    await ready(ws)
    _, run, _ = await a.call("POST", runs_path(cid), {"agent": "helper"}, expect=201)
    for i in range(5):
        await a.post_message(cid, f"step {i}", type="AGENT_OUTPUT", run_id=run["id"])
        await a.call("PATCH", runs_path(cid, run["id"]),
                     {"status": "running", "activity": f"step {i}"}, expect=200)
    await a.call("PATCH", runs_path(cid, run["id"]), {"status": "completed"}, expect=200)
    expected: list[tuple[str, Any]] = [("run", "queued")]
    for i in range(5):
        expected += [("message", i + 1), ("run", "running")]
    assert await timeline(ws, 12) == [*expected, ("run", "completed")]
    await ws.close()
