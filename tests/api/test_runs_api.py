"""Runs over REST (issue 17): every transition allowed and refused, cancel, input policies,
actions and their answers, the stale sweep, webhook rows; on a real Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chatserver.app import create_app
from chatserver.appkeys import RUNS
from chatserver.auth.keys import create_api_key
from chatserver.models import RunStatus
from chatserver.services.runstates import ALLOWED
from tests.conftest import Api, next_link

# A path from queued to each status, through allowed transitions only.
PATHS = {
    "queued": [],
    "running": ["running"],
    "requires_action": ["running", "requires_action"],
    "completed": ["running", "completed"],
    "failed": ["running", "failed"],
    "cancelled": ["cancelled"],
}


@pytest.fixture
async def api(client: Any, make_key: Any) -> Api:
    return Api(client, await make_key("agent-key", team_id=1))


def runs_path(cid: str, run_id: str = "") -> str:
    return f"/conversations/{cid}/runs" + (f"/{run_id}" if run_id else "")


async def new_run(api: Api, cid: str, **body: Any) -> dict[str, Any]:
    _, run, _ = await api.call("POST", runs_path(cid), {"agent": "helper", **body}, expect=201)
    return run


async def move(api: Api, cid: str, run_id: str, status: str, expect: int = 200, **more: Any) -> Any:
    _, body, _ = await api.call("PATCH", runs_path(cid, run_id), {"status": status, **more},
                                expect=expect)
    return body


async def token_for(api: Api, cid: str, user: str = "alice") -> Api:
    _, minted, _ = await api.call("POST", f"/conversations/{cid}/tokens", {"user": user},
                                  expect=201)
    return Api(api.client, minted["token"])


async def test_create_get_and_list_newest_first(api: Api) -> None:
    cid = await api.create_conversation()
    message = await api.post_message(cid, "hello")
    first = await new_run(api, cid, input_seq=message["seq"], metadata={"k": 1})
    assert first["status"] == "queued" and first["agent"] == "helper"
    assert first["input_seq"] == 1 and first["started_at"] is None and first["error"] is None
    second = await new_run(api, cid)
    _, page, headers = await api.call("GET", runs_path(cid) + "?limit=1", expect=200)
    assert [r["id"] for r in page] == [second["id"]]
    _, rest, _ = await api.call("GET", next_link(headers), expect=200)
    assert [r["id"] for r in rest] == [first["id"]]
    _, got, _ = await api.call("GET", runs_path(cid, first["id"]), expect=200)
    assert got == first


async def test_bad_and_unknown_ids_and_bodies(api: Api, make_key: Any) -> None:
    cid = await api.create_conversation()
    run = await new_run(api, cid)
    _, problem, _ = await api.call("GET", runs_path(cid, "nope"), expect=400)
    assert problem["invalid-params"][0]["name"] == "run_id"
    await api.call("GET", runs_path(cid, "0" * 32), expect=404)
    other = Api(api.client, await make_key("other", team_id=2))
    await other.call("GET", runs_path(cid, run["id"]), expect=404)
    await other.call("PATCH", runs_path(cid, run["id"]), {"status": "running"}, expect=404)
    _, problem, _ = await api.call("POST", runs_path(cid), {"agent": "a", "input_seq": 9},
                                   expect=400)
    assert problem["invalid-params"][0]["name"] == "input_seq"
    _, problem, _ = await api.call("PATCH", runs_path(cid, run["id"]),
                                   {"activity": "x" * 201}, expect=400)
    assert problem["invalid-params"][0]["name"] == "activity"
    _, problem, _ = await api.call("PATCH", runs_path(cid, run["id"]),
                                   {"status": "running", "error": {"code": "x"}}, expect=400)
    assert problem["invalid-params"][0]["name"] == "error"


async def test_every_transition_is_allowed_or_refused_by_the_table(api: Api) -> None:
    cid = await api.create_conversation()
    for start, path in PATHS.items():
        for target in RunStatus:
            run = await new_run(api, cid)
            for step in path:
                await move(api, cid, run["id"], step)
            allowed = target in ALLOWED[RunStatus(start)] or (
                target == start and ALLOWED[RunStatus(start)])
            extra = {"error": {"code": "boom"}} if target == "failed" else {}
            status, body, _ = await api.call("PATCH", runs_path(cid, run["id"]),
                                             {"status": str(target), **extra})
            assert status == (200 if allowed else 409), (start, target, body)
            if allowed:
                assert body["status"] == target
            else:
                assert start in body["detail"], body
                assert body["invalid-params"] == [{"name": "status",
                                                   "reason": f"the run is {start}"}]


async def test_timestamps_error_and_activity(api: Api) -> None:
    cid = await api.create_conversation()
    run = await new_run(api, cid)
    running = await move(api, cid, run["id"], "running", activity="searching sources")
    assert running["started_at"] and running["activity"] == "searching sources"
    assert running["version"] == run["version"] + 1
    failed = await move(api, cid, run["id"], "failed", error={"code": "tool", "message": "x"})
    assert failed["ended_at"] and failed["error"] == {"code": "tool", "message": "x"}


async def test_cancel_by_a_user_token_and_who_may_patch(api: Api) -> None:
    cid = await api.create_conversation()
    run = await new_run(api, cid)
    await move(api, cid, run["id"], "running")
    user = await token_for(api, cid)
    await user.call("PATCH", runs_path(cid, run["id"]), {"status": "completed"}, expect=403)
    await user.call("POST", runs_path(cid), {"agent": "a"}, expect=403)
    _, listed, _ = await user.call("GET", runs_path(cid), expect=200)
    assert [r["id"] for r in listed] == [run["id"]]
    _, cancelled, _ = await user.call("POST", runs_path(cid, run["id"]) + "/cancel", expect=200)
    assert cancelled["cancel_requested_at"] and cancelled["status"] == "running"
    ended = await move(api, cid, run["id"], "cancelled")
    assert ended["ended_at"] and ended["cancel_requested_at"] == cancelled["cancel_requested_at"]
    _, problem, _ = await user.call("POST", runs_path(cid, run["id"]) + "/cancel", expect=409)
    assert "cancelled" in problem["detail"]


async def test_reject_policy(api: Api) -> None:
    cid = await api.create_conversation(config={"on_input_during_run": "reject"})
    run = await new_run(api, cid)
    path = f"/conversations/{cid}/messages"
    _, problem, _ = await api.call("POST", path, {"content": "again"}, expect=409)
    assert problem["code"] == "run_active" and run["id"] in problem["detail"]
    await api.call("POST", path, {"content": "agent", "type": "AGENT_OUTPUT"}, expect=201)
    await move(api, cid, run["id"], "running")
    await api.call("POST", path, {"content": "again"}, expect=409)
    await move(api, cid, run["id"], "completed")
    await api.call("POST", path, {"content": "again"}, expect=201)
    _, problem, _ = await api.call("PATCH", f"/conversations/{cid}",
                                   {"config": {"on_input_during_run": "sometimes"}}, expect=400)
    assert problem["invalid-params"][0]["name"] == "config.on_input_during_run"


async def test_interrupt_policy_stores_and_requests_cancel(api: Api) -> None:
    cid = await api.create_conversation(config={"on_input_during_run": "interrupt"})
    run = await new_run(api, cid)
    await move(api, cid, run["id"], "running")
    message = await api.post_message(cid, "stop, I meant something else")
    assert message["seq"] == 1
    _, got, _ = await api.call("GET", runs_path(cid, run["id"]), expect=200)
    assert got["cancel_requested_at"] is not None and got["status"] == "running"


async def test_enqueue_policy(api: Api) -> None:
    cid = await api.create_conversation(config={"on_input_during_run": "enqueue"})
    first = await new_run(api, cid)
    second = await new_run(api, cid)
    assert first["queued_behind"] is None and second["queued_behind"] == first["id"]
    await move(api, cid, first["id"], "running")
    _, problem, _ = await api.call("PATCH", runs_path(cid, second["id"]),
                                   {"status": "running"}, expect=409)
    assert problem["code"] == "queued_behind" and "running" in problem["detail"]
    await move(api, cid, first["id"], "completed")
    assert (await move(api, cid, second["id"], "running"))["status"] == "running"


async def ask(api: Api, cid: str, run_id: str, **action: Any) -> dict[str, Any]:
    action.setdefault("kind", "confirm")
    action.setdefault("prompt", "Send the email?")
    return await api.post_message(cid, "question", type="AGENT_OUTPUT", run_id=run_id,
                                  action=action)


async def test_action_moves_the_run_and_first_answer_wins(api: Api) -> None:
    cid = await api.create_conversation()
    run = await new_run(api, cid)
    path = f"/conversations/{cid}/messages"
    _, problem, _ = await api.call("POST", path, {
        "content": "q", "action": {"kind": "confirm", "prompt": "ok?"}}, expect=400)
    assert problem["invalid-params"][0]["name"] == "run_id"
    _, problem, _ = await api.call("POST", path, {
        "content": "q", "run_id": run["id"], "action": {"kind": "confirm", "prompt": "ok?"}},
        expect=409)  # a queued run cannot wait for an answer
    assert "queued" in problem["detail"]
    await move(api, cid, run["id"], "running")
    message = await ask(api, cid, run["id"])
    assert message["run_id"] == run["id"] and message["action"]["answer"] is None
    assert [o["id"] for o in message["action"]["options"]] == ["yes", "no"]
    _, got, _ = await api.call("GET", runs_path(cid, run["id"]), expect=200)
    assert got["status"] == "requires_action" and got["seq"] == message["seq"]
    user = await token_for(api, cid, "alice")
    answer_path = f"{path}/{message['id']}/answer"
    _, problem, _ = await user.call("POST", answer_path, {"option": "maybe"}, expect=400)
    assert problem["invalid-params"][0]["name"] == "option"
    _, answered, _ = await user.call("POST", answer_path, {"option": "yes"}, expect=200)
    action = answered["action"]
    assert action["answer"] == {"option": "yes"} and action["answered_by"] == "alice"
    assert action["answered_at"]
    _, problem, _ = await api.call("POST", answer_path, {"option": "no"}, expect=409)
    assert problem["code"] == "already_answered"
    await api.call("POST", f"{path}/{'0' * 32}/answer", {"option": "no"}, expect=404)


async def test_expired_action_and_form_values(api: Api) -> None:
    cid = await api.create_conversation()
    run = await new_run(api, cid)
    await move(api, cid, run["id"], "running")
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    expired = await ask(api, cid, run["id"], expires_at=past)
    path = f"/conversations/{cid}/messages"
    _, problem, _ = await api.call("POST", f"{path}/{expired['id']}/answer", {"option": "yes"},
                                   expect=409)
    assert problem["code"] == "expired"
    schema = {"type": "object", "required": ["amount"], "additionalProperties": False,
              "properties": {"amount": {"type": "integer", "minimum": 1}}}
    form = await ask(api, cid, run["id"], kind="form", prompt="How much?", schema=schema)
    answer = f"{path}/{form['id']}/answer"
    _, problem, _ = await api.call("POST", answer, {"values": {"amount": 0}}, expect=400)
    assert problem["invalid-params"][0]["name"] == "values.amount"
    await api.call("POST", answer, {"option": "yes"}, expect=400)
    _, answered, _ = await api.call("POST", answer, {"values": {"amount": 3}}, expect=200)
    assert answered["action"]["answer"] == {"values": {"amount": 3}}
    _, problem, _ = await api.call("POST", path, {
        "content": "q", "run_id": run["id"],
        "action": {"kind": "form", "prompt": "?", "schema": {"type": 12}}}, expect=400)
    assert problem["invalid-params"][0]["name"] == "action.schema"
    _, problem, _ = await api.call("POST", path, {
        "content": "q", "run_id": run["id"], "action": {"kind": "choice", "prompt": "?"}},
        expect=400)
    assert problem["invalid-params"][0]["name"] == "action.options"


async def test_stale_runs_are_failed(settings: Any, aiohttp_client: Any, make_key: Any) -> None:
    app = create_app(settings.replace(runs={"stale_after": 0.0}))
    api = Api(await aiohttp_client(app), await make_key("agent-key", team_id=1))
    _, ready, _ = await api.call("GET", "/readyz", expect=200)
    assert "run-stale-sweep" in ready["tasks"]
    cid = await api.create_conversation()
    run = await new_run(api, cid)
    await move(api, cid, run["id"], "running")
    waiting = await new_run(api, cid)
    done = await new_run(api, cid)
    await move(api, cid, done["id"], "cancelled")
    assert await app[RUNS].sweep() == 1
    _, got, _ = await api.call("GET", runs_path(cid, run["id"]), expect=200)
    assert got["status"] == "failed" and got["error"]["code"] == "stale"
    for other, status in ((waiting, "queued"), (done, "cancelled")):
        _, still, _ = await api.call("GET", runs_path(cid, other["id"]), expect=200)
        assert still["status"] == status
    assert await app[RUNS].sweep() == 0


async def test_webhook_rows_for_runs_and_answers(api: Api, db: Any) -> None:
    cid = await api.create_conversation(config={"callback_url": "https://hooks.example.com/x"})
    run = await new_run(api, cid)
    await move(api, cid, run["id"], "running")
    await api.call("PATCH", runs_path(cid, run["id"]), {"activity": "reading"}, expect=200)
    message = await ask(api, cid, run["id"])
    await api.call("POST", f"/conversations/{cid}/messages/{message['id']}/answer",
                   {"option": "yes"}, expect=200)
    await api.call("POST", runs_path(cid, run["id"]) + "/cancel", expect=200)
    rows = await db.fetch("SELECT event_type, payload FROM webhook_deliveries "
                          "ORDER BY position")
    types = [r["event_type"] for r in rows]
    assert types == ["run.created", "run.updated", "message.created", "run.updated",
                     "message.updated", "action.answered", "run.updated"], types
    statuses = [r["payload"]["data"]["run"]["status"] for r in rows
                if r["event_type"].startswith("run.")]
    assert statuses == ["queued", "running", "requires_action", "requires_action"]


async def agent_token(api: Api, cid: str, agent: str) -> Api:
    _, minted, _ = await api.call("POST", f"/conversations/{cid}/tokens",
                                  {"participant": agent, "kind": "agent"}, expect=201)
    return Api(api.client, minted["token"])


async def test_agent_credentials_drive_their_own_runs(api: Api, db: Any) -> None:
    cid = await api.create_conversation()
    helper = await agent_token(api, cid, "helper")
    other = await agent_token(api, cid, "other")
    _, run, _ = await helper.call("POST", runs_path(cid), {}, expect=201)
    assert run["agent"] == "helper"
    _, problem, _ = await helper.call("POST", runs_path(cid), {"agent": "other"}, expect=400)
    assert problem["invalid-params"][0]["name"] == "agent"
    await helper.call("PATCH", runs_path(cid, run["id"]), {"status": "running"}, expect=200)
    await other.call("PATCH", runs_path(cid, run["id"]), {"status": "completed"}, expect=403)
    user = await token_for(api, cid, "alice")
    await user.call("PATCH", runs_path(cid, run["id"]), {"status": "completed"}, expect=403)
    asked = await helper.post_message(cid, "ok?", run_id=run["id"],
                                      action={"kind": "confirm", "prompt": "Go on?"})
    assert asked["author"]["id"] == "helper" and asked["type"] == "AGENT_OUTPUT"
    _, problem, _ = await user.call("POST", f"/conversations/{cid}/messages", {
        "content": "q", "run_id": run["id"], "action": {"kind": "confirm", "prompt": "?"}},
        expect=400)
    assert problem["invalid-params"][0]["name"] == "action"
    _, answered, _ = await user.call(
        "POST", f"/conversations/{cid}/messages/{asked['id']}/answer", {"option": "yes"},
        expect=200)
    assert answered["action"]["answered_by"] == "alice"
    # An agent key (keys create --agent) moves its agent's runs, not another agent's.
    key, _ = await create_api_key(db, "helper-key", 1, agent="helper")
    helper_key = Api(api.client, key)
    await helper_key.call("PATCH", runs_path(cid, run["id"]), {"status": "running"}, expect=200)
    _, others, _ = await api.call("POST", runs_path(cid), {"agent": "other"}, expect=201)
    await helper_key.call("PATCH", runs_path(cid, others["id"]), {"status": "running"},
                          expect=403)
    await helper.call("PATCH", runs_path(cid, run["id"]), {"status": "completed"}, expect=200)


async def test_cancel_aborts_the_runs_open_stream(api: Api, db: Any) -> None:
    cid = await api.create_conversation(config={"callback_url": "https://hooks.example.com/x"})
    run = await new_run(api, cid)
    await move(api, cid, run["id"], "running")
    path = f"/conversations/{cid}/messages"
    _, problem, _ = await api.call("POST", path, {"content": "", "stream": True,
                                                  "run_id": "0" * 32}, expect=400)
    assert problem["invalid-params"][0]["name"] == "run_id"
    _, stream, _ = await api.call("POST", path, {"content": "Let me ", "stream": True,
                                                 "run_id": run["id"]}, expect=201)
    assert stream["run_id"] == run["id"] and stream["stream"]["state"] == "open"
    _, other, _ = await api.call("POST", path, {"content": "unrelated", "stream": True},
                                 expect=201)
    await api.call("POST", f"{path}/{stream['id']}/deltas",
                   {"deltas": [{"index": 0, "text": "think"}]}, expect=200)
    user = await token_for(api, cid)
    await user.call("POST", runs_path(cid, run["id"]) + "/cancel", expect=200)
    _, history, _ = await api.call("GET", path, expect=200)
    by_id = {m["id"]: m for m in history}
    assert by_id[stream["id"]]["stream"] == {"state": "aborted", "next_index": 1,
                                             "reason": "cancelled"}
    assert by_id[stream["id"]]["content"] == "Let me think"
    assert by_id[other["id"]]["stream"]["state"] == "open"  # not the run's
    status, problem, _ = await api.call("POST", f"{path}/{stream['id']}/deltas",
                                        {"deltas": [{"index": 1, "text": "!"}]})
    assert status == 409, problem
    rows = await db.fetch("SELECT event_type FROM webhook_deliveries ORDER BY position")
    assert [r["event_type"] for r in rows][-2:] == ["run.updated", "message.completed"]
