"""Tenant isolation matrix: team A's key and browser token try every route in ROUTES (new routes are
covered as they are added) and the websocket on team B's objects.

Each answer must equal, status and body (minus request_id, with ids masked), the answer for ids
that do not exist: the same code path, so nothing tells A that B's objects exist. Nothing of B's
(ids, content, secrets, URLs) may appear in any answer, and B's objects must be unchanged after.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

import pytest

from chatserver.api.middlewares import PUBLIC_ROUTES, TOKEN_ROUTES, TOKEN_RUN_ROUTES
from chatserver.api.routes import ROUTES
from chatserver.app import create_app
from chatserver.openapi.operations import OPERATIONS
from tests.conftest import Api
from tests.realtime.helpers import connect
from tests.webhooks.helpers import eventually, start_receiver, webhook_settings

# A valid body for each route that takes one, so the request gets past validation to the lookup.
BODIES: dict[str, Any] = {
    "create_conversation": {"channel": "API"},
    "update_conversation": {"metadata": {"intruder": True}},
    "post_message": {"content": "intrusion"},
    "update_message": {"status": "FAILED"},
    "create_workflow_conversation": {"agent_product_id": 1},
    "update_workflow_conversation": {"agent_product_id": 666},
    "connect_to_workflow_conversation": {"intruder": True},
    "create_token": {"user": "mallory"},
    "create_endpoint": {"url": "http://127.0.0.1:9/mallory", "event_types": ["*"]},
    "update_endpoint": {"url": "http://127.0.0.1:9/mallory"},
    "append_deltas": {"deltas": [{"index": 0, "text": "intrusion"}]},
    "complete_stream": {"content": "intrusion"},
    "abort_stream": {"reason": "intrusion"},
    "put_participant": {"role": "observer"},
    "mark_read": {"seq": 0},
    "create_run": {"agent": "intruder"},
    "update_run": {"status": "failed", "error": {"code": "intrusion"}},
    "answer_action": {"option": "yes"},
}
# Token routes refused to a user token (not an agent) before any lookup: the same for every id.
AGENT_ONLY = frozenset({"update_message", "create_run"})
SOCKET_ROUTE = "conversation_socket"
HEX = re.compile(r"[0-9a-f]{32}")
B_USER = 424242


class Tenants:
    """Team B's objects (and what must never leak), and ids that exist nowhere."""

    def __init__(self) -> None:
        self.b: dict[str, str] = {}
        self.a_conversation = ""
        self.a_token = ""  # a browser token of A's conversation
        self.leaks: list[str] = []
        self.missing = {
            "conversation_id": uuid.uuid4().hex, "message_id": uuid.uuid4().hex,
            "delivery_id": uuid.uuid4().hex, "endpoint_id": uuid.uuid4().hex,
            "id": str(2**62 + secrets.randbelow(2**40)),
            "user_id": str(2**62 + secrets.randbelow(2**40)),
            "participant_id": f"nobody-{secrets.token_hex(8)}",
            "run_id": uuid.uuid4().hex,
        }


async def arrange(a: Api, b: Api, receiver: Any) -> Tenants:
    t = Tenants()
    t.a_conversation = await a.create_conversation()
    _, token, _ = await a.call("POST", f"/conversations/{t.a_conversation}/tokens",
                               {"user": "alice"}, expect=201)
    t.a_token = token["token"]
    _, created, _ = await b.call("POST", "/conversations", {
        "channel": "API", "metadata": {"owner": "team-b-secret-meta"},
        "config": {"callback_url": receiver.url("/team-b-hook")}}, expect=201)
    cid = created["id"]
    message = await b.post_message(cid, "team B's private words")
    _, run, _ = await b.call("POST", f"/conversations/{cid}/runs", {"agent": "b-agent"},
                             expect=201)
    await b.call("PATCH", f"/conversations/{cid}/runs/{run['id']}", {"status": "running"},
                 expect=200)
    asked = await b.post_message(cid, "ok?", type="AGENT_OUTPUT", run_id=run["id"],
                                 action={"kind": "confirm", "prompt": "team B's question"})
    await b.call("PUT", f"/conversations/{cid}/participants/bea", {"name": "Bea B."}, expect=201)
    # message, run.created, run.updated (running), message (the action), run.updated
    await receiver.wait_for(5, "/team-b-hook")

    async def delivered() -> Any:
        _, items, _ = await b.call("GET", f"/conversations/{cid}/webhook-deliveries", expect=200)
        return items

    deliveries = await eventually(delivered)
    _, endpoint, _ = await b.call("POST", "/webhook-endpoints", {
        "url": receiver.url("/team-b-endpoint"), "event_types": ["*"],
        "description": "team-b-secret-endpoint"}, expect=201)
    _, workflow, _ = await b.call("POST", "/workflow-conversations",
                                  {"agent_product_id": 7, "user_id": B_USER}, expect=201)
    # B's message ids point at its action message: the answer route finds an action there.
    t.b = {"conversation_id": cid, "message_id": asked["id"],
           "delivery_id": deliveries[0]["id"], "endpoint_id": endpoint["id"],
           "id": str(workflow["id"]),
           "user_id": str(B_USER), "participant_id": "bea", "run_id": run["id"]}
    t.leaks = [cid, message["id"], "team B's private words", "team-b-secret-meta", "Bea B.",
               run["id"], "b-agent", asked["id"], "team B's question",
               created["webhook_secret"], "/team-b-hook", deliveries[0]["id"],
               endpoint["id"], endpoint["secret"], "/team-b-endpoint", "team-b-secret-endpoint"]
    return t


def params_of(path: str) -> list[str]:
    return re.findall(r"{(\w+)}", path)


def fill(path: str, values: dict[str, str]) -> str:
    for name in params_of(path):
        assert name in values, f"the isolation matrix does not know the path parameter {name!r}"
        path = path.replace("{" + name + "}", values[name])
    return path


def masked(body: Any) -> Any:
    """The body without request_id and with every hex id masked (ids differ, shapes must not)."""
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "request_id"}
    return re.sub(HEX, "<id>", repr(body))


def object_routes() -> list[tuple[str, str, str]]:
    """(method, path, name) of every non-public route that names an object in its path."""
    return [(m, p, n) for m, p, _h, n in ROUTES if params_of(p) and n not in PUBLIC_ROUTES]


async def answer(api: Api, method: str, path: str, name: str) -> tuple[int, Any]:
    body = BODIES.get(name)
    if OPERATIONS[name].request is not None:
        assert name in BODIES, f"add a valid body for {name} to BODIES"
    status, payload, _ = await api.call(method, path, body)
    return status, payload


def assert_no_leak(tenants: Tenants, payload: Any, where: str) -> None:
    text = repr(payload)
    for secret in tenants.leaks:
        assert secret not in text, f"{where} leaked {secret!r}: {text[:300]}"


@pytest.fixture
async def world(database_url: str, aiohttp_client: Any, aiohttp_server: Any,
                make_key: Any) -> tuple[Api, Api, Tenants]:
    receiver = await start_receiver(aiohttp_server)
    client = await aiohttp_client(create_app(webhook_settings(database_url)))
    a, b = Api(client, await make_key("a", 1)), Api(client, await make_key("b", 2))
    return a, b, await arrange(a, b, receiver)


async def test_every_route_treats_other_teams_objects_as_missing(
    world: tuple[Api, Api, Tenants]
) -> None:
    a, b, t = world
    callers = {"key": a, "token": Api(a.client, t.a_token)}
    own = {"conversation_id": t.a_conversation}
    before = await snapshot(b, t)
    checked = 0
    for method, path, name in object_routes():
        if name == SOCKET_ROUTE:
            continue
        # B's objects against missing ids; and, below A's own conversation, B's (message,
        # delivery) ids against missing ones.
        variants = [(t.b, t.missing)]
        # (A participant id names nobody outside its conversation: PUT in A's own creates one.)
        if (len(params_of(path)) > 1 and params_of(path)[0] == "conversation_id"
                and name != "put_participant"):
            variants.append(({**t.b, **own}, {**t.missing, **own}))
        for label, caller in callers.items():
            for targets, nowhere in variants:
                where = f"{label} {method} {path} on {targets}"
                got = await answer(caller, method, fill(path, targets), name)
                missing = await answer(caller, method, fill(path, nowhere), name)
                assert got[0] == missing[0] and masked(got[1]) == masked(missing[1]), (
                    where, got, missing)
                assert_no_leak(t, got[1], where)
                expected = expected_status(label, name, path)
                assert got[0] in expected, (where, got)
                checked += 1
    assert checked >= 2 * (len(object_routes()) - 1)
    assert await snapshot(b, t) == before, "team A changed team B's objects"


def expected_status(caller: str, name: str, path: str) -> tuple[int, ...]:
    if caller == "token" and (name not in TOKEN_ROUTES | TOKEN_RUN_ROUTES or name in AGENT_ONLY):
        return (403,)  # decided before any lookup: the same for every id
    if path.startswith("/users/"):
        return (200,)  # a list filtered by team: empty, as for an unknown user
    return (404,)


async def test_routes_without_ids_show_nothing_of_other_teams(
    world: tuple[Api, Api, Tenants]
) -> None:
    a, _b, t = world
    for method, path, _h, name in ROUTES:
        if params_of(path) or name in PUBLIC_ROUTES:
            continue
        status, payload = await answer(a, method, path, name)
        assert status < 500, (name, status, payload)
        assert_no_leak(t, payload, f"{method} {path}")


async def test_websocket_refuses_other_teams_conversation_as_missing(
    world: tuple[Api, Api, Tenants]
) -> None:
    a, _b, t = world
    for credential in (a.key, t.a_token):
        refusals = []
        for cid in (t.b["conversation_id"], t.missing["conversation_id"]):
            ws = await connect(a.client, cid, credential)
            msg = await ws.receive()
            refusals.append((msg.data, msg.extra))
            await ws.close()
        assert refusals[0] == refusals[1] and refusals[0][0] == 4404, refusals


async def snapshot(b: Api, t: Tenants) -> Any:
    cid = t.b["conversation_id"]
    _, conversation, _ = await b.call("GET", f"/conversations/{cid}", expect=200)
    _, messages, _ = await b.call("GET", f"/conversations/{cid}/messages", expect=200)
    _, workflow, _ = await b.call("GET", f"/workflow-conversations/{t.b['id']}", expect=200)
    _, webhook, _ = await b.call("GET", f"/conversations/{cid}/webhook", expect=200)
    _, deliveries, _ = await b.call("GET", f"/conversations/{cid}/webhook-deliveries", expect=200)
    _, participants, _ = await b.call("GET", f"/conversations/{cid}/participants", expect=200)
    _, endpoint, _ = await b.call("GET", f"/webhook-endpoints/{t.b['endpoint_id']}", expect=200)
    endpoint = {k: v for k, v in endpoint.items() if k != "pending_deliveries"}
    _, runs, _ = await b.call("GET", f"/conversations/{cid}/runs", expect=200)
    return (conversation, messages, workflow, webhook, [d["id"] for d in deliveries],
            participants, endpoint, runs)
