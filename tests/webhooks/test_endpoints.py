"""Team-wide webhook endpoints: the secret once, filters (exact and `prefix.*`), each endpoint's
own signature (verified with the standardwebhooks package against a real receiver), FIFO per
conversation, test events whatever the filter, the log and redelivery, disable/enable, delete,
team scoping, SSRF checks, the per-team cap, and callback_url unchanged beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from chatserver.app import create_app
from chatserver.config import Settings
from chatserver.models import EVENT_TYPES
from tests.conftest import Api
from tests.webhooks.helpers import (
    Receiver,
    eventually,
    hooked_conversation,
    status,
    webhook_settings,
)

TEAM = 7


@pytest.fixture
async def team(api_for: Any) -> Api:
    return await api_for(TEAM)


async def endpoint(api: Api, receiver: Receiver, path: str, *event_types: str,
                   **body: Any) -> dict[str, Any]:
    _, created, _ = await api.call("POST", "/webhook-endpoints", {
        "url": receiver.url(path), "event_types": list(event_types), **body}, expect=201)
    return created


def types(requests: list[Any], secret: str) -> list[str]:
    return [Webhook(secret).verify(r.body, r.headers)["type"] for r in requests]


async def test_events_reach_each_matching_endpoint_signed_with_its_own_secret(
    team: Api, receiver: Receiver
) -> None:
    messages = await endpoint(team, receiver, "/messages", "message.created")
    conversations = await endpoint(team, receiver, "/conversations", "conversation.*",
                                   description="CRM sync")
    assert messages["secret"].startswith("whsec_") and messages["secret"] != conversations["secret"]
    assert conversations["description"] == "CRM sync" and conversations["team_id"] == TEAM
    conversation_id = await team.create_conversation()
    await team.call("PATCH", f"/conversations/{conversation_id}",
                    {"metadata": {"stage": "lead"}}, expect=200)
    posted = await team.post_message(conversation_id, "hello")

    [created] = await receiver.wait_for(1, "/messages")
    payload = created.verify(messages["secret"])
    assert payload["type"] == "message.created"
    assert payload["data"] == {"conversation_id": conversation_id, "message": posted}
    with pytest.raises(WebhookVerificationError):
        Webhook(conversations["secret"]).verify(created.body, created.headers)

    await receiver.wait_for(2, "/conversations")
    first, second = receiver.at("/conversations")
    assert types([first, second], conversations["secret"]) == [
        "conversation.created", "conversation.updated"]
    updated = second.verify(conversations["secret"])["data"]
    assert updated["conversation_id"] == conversation_id
    assert updated["conversation"]["metadata"] == {"stage": "lead"}
    # The secret is shown once: never in a read.
    _, read, _ = await team.call("GET", f"/webhook-endpoints/{messages['id']}", expect=200)
    assert "secret" not in read and read["event_types"] == ["message.created"]
    _, listed, _ = await team.call("GET", "/webhook-endpoints", expect=200)
    assert {e["id"] for e in listed} == {messages["id"], conversations["id"]}
    assert all("secret" not in e for e in listed)


async def test_fifo_per_conversation_and_callback_url_unchanged(
    team: Api, receiver: Receiver
) -> None:
    everything = await endpoint(team, receiver, "/all", "*")
    callback_id, callback_secret = await hooked_conversation(team, receiver, "/callback")
    other = await team.create_conversation()
    for i in range(5):
        await team.post_message(callback_id, f"c{i}")
        await team.post_message(other, f"o{i}")
    await receiver.wait_for(5, "/callback")
    await receiver.wait_for(12, "/all")  # 2 conversation.created + 10 messages
    # The callback_url gets its conversation's messages as before (no conversation events).
    callback = [r.verify(callback_secret) for r in receiver.at("/callback")]
    assert [p["data"]["message"]["content"] for p in callback] == [f"c{i}" for i in range(5)]
    team_wide = [r.verify(everything["secret"]) for r in receiver.at("/all")]
    for conversation_id, prefix in ((callback_id, "c"), (other, "o")):
        mine = [p for p in team_wide if p["data"]["conversation_id"] == conversation_id]
        assert mine[0]["type"] == "conversation.created"
        assert [p["data"]["message"]["content"] for p in mine[1:]] == [
            f"{prefix}{i}" for i in range(5)]
    _, log, _ = await team.call("GET", f"/conversations/{callback_id}/webhook-deliveries",
                                expect=200)
    assert len(log) == 5  # the conversation's own endpoint's log only


async def test_test_event_goes_whatever_the_filter_and_the_log_redelivers(
    team: Api, receiver: Receiver
) -> None:
    runs = await endpoint(team, receiver, "/runs", "run.*")
    path = f"/webhook-endpoints/{runs['id']}"
    _, tested, _ = await team.call("POST", path + "/test", expect=200)
    assert tested["success"] is True and tested["event_type"] == "webhook.test"
    [request] = await receiver.wait_for(1, "/runs")
    assert request.verify(runs["secret"])["data"] == {"endpoint_id": runs["id"]}
    # A message is not a run event: nothing queued for this endpoint.
    await team.post_message(await team.create_conversation(), "not for runs")
    _, log, _ = await team.call("GET", path + "/deliveries", expect=200)
    assert [d["event_type"] for d in log] == ["webhook.test"]
    _, again, _ = await team.call(
        "POST", f"{path}/deliveries/{log[0]['id']}/redeliver", expect=200)
    assert [a["trigger"] for a in again["attempts"]] == ["manual", "manual"]
    [_, resent] = await receiver.wait_for(2, "/runs")
    assert resent.verify(runs["secret"])["type"] == "webhook.test"


async def test_disable_queues_nothing_enable_resumes_and_delete_stops(
    team: Api, receiver: Receiver
) -> None:
    hook = await endpoint(team, receiver, "/hook", "message.created", disabled=True)
    assert hook["disabled"] is True
    path = f"/webhook-endpoints/{hook['id']}"
    conversation_id = await team.create_conversation()
    await team.post_message(conversation_id, "while disabled")
    _, enabled, _ = await team.call("PATCH", path, {"disabled": False}, expect=200)
    assert enabled["disabled"] is False and enabled["pending_deliveries"] == 0
    await team.post_message(conversation_id, "after enabling")
    [request] = await receiver.wait_for(1)
    assert request.verify(hook["secret"])["data"]["message"]["content"] == "after enabling"
    _, patched, _ = await team.call(
        "PATCH", path, {"event_types": ["message.*"], "url": receiver.url("/moved")}, expect=200)
    assert patched["event_types"] == ["message.*"] and patched["url"].endswith("/moved")
    await team.post_message(conversation_id, "moved")
    await receiver.wait_for(1, "/moved")
    await team.call("DELETE", path, expect=204)
    await team.call("GET", path, expect=404)
    await team.post_message(conversation_id, "after delete")
    _, listed, _ = await team.call("GET", "/webhook-endpoints", expect=200)
    assert listed == []


async def test_team_scoping_admin_reach_and_browser_tokens(
    team: Api, api: Api, api_for: Any, receiver: Receiver
) -> None:
    mine = await endpoint(team, receiver, "/hook", "message.created")
    path = f"/webhook-endpoints/{mine['id']}"
    stranger = await api_for(TEAM + 1, "stranger")
    for method, suffix, body in (("GET", "", None), ("PATCH", "", {"description": "x"}),
                                 ("DELETE", "", None), ("POST", "/test", None),
                                 ("GET", "/deliveries", None)):
        await stranger.call(method, path + suffix, body, expect=404)
    _, listed, _ = await stranger.call("GET", "/webhook-endpoints", expect=200)
    assert listed == []
    await api.call("GET", path, expect=200)  # an admin key reaches every team's
    _, other_team, _ = await api.call("POST", "/webhook-endpoints", {
        "url": receiver.url("/admin"), "event_types": ["*"], "team_id": TEAM + 1}, expect=201)
    assert other_team["team_id"] == TEAM + 1
    await team.call("GET", f"/webhook-endpoints/{other_team['id']}", expect=404)
    # A team key cannot create for another team.
    _, problem, _ = await team.call("POST", "/webhook-endpoints", {
        "url": receiver.url(), "event_types": ["*"], "team_id": TEAM + 1}, expect=400)
    assert "team_id" in str(problem)
    conversation_id = await team.create_conversation()
    _, token, _ = await team.call("POST", f"/conversations/{conversation_id}/tokens",
                                  {"user": "u"}, expect=201)
    browser = Api(team.client, token["token"])
    await browser.call("GET", "/webhook-endpoints", expect=403)
    await browser.call("POST", "/webhook-endpoints",
                       {"url": receiver.url(), "event_types": ["*"]}, expect=403)
    await browser.call("GET", path, expect=403)


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "http://10.0.0.1/hook", "event_types": ["*"]}, "url"),
    ({"url": "http://169.254.169.254/latest", "event_types": ["*"]}, "url"),
    ({"url": "ftp://example.com/", "event_types": ["*"]}, "url"),
    ({"url": "http://127.0.0.1:9/", "event_types": ["message.deleted"]}, "event_types[0]"),
    ({"url": "http://127.0.0.1:9/", "event_types": ["webhook.test"]}, "event_types[0]"),
    ({"url": "http://127.0.0.1:9/", "event_types": ["nothing.*"]}, "event_types[0]"),
    ({"url": "http://127.0.0.1:9/", "event_types": []}, "event_types"),
    ({"url": "http://127.0.0.1:9/"}, "event_types"),
    ({"event_types": ["*"]}, "url"),
    ({"url": "http://127.0.0.1:9/", "event_types": ["*"], "disabled": "no"}, "disabled"),
    ({"url": "http://127.0.0.1:9/", "event_types": ["*"], "secret": "mine"}, "secret"),
    ({"url": "http://127.0.0.1:9/", "event_types": ["*"], "description": "x" * 501},
     "description"),
])
async def test_bad_input_is_a_400_naming_the_field(
    team: Api, body: dict[str, Any], field: str
) -> None:
    status, problem, _ = await team.call("POST", "/webhook-endpoints", body)
    assert status == 400, problem
    assert field in {p["name"] for p in problem["invalid-params"]}, problem


async def test_bad_ids_and_patches(team: Api, receiver: Receiver) -> None:
    await team.call("GET", "/webhook-endpoints/not-an-id", expect=400)
    await team.call("GET", "/webhook-endpoints/" + "0" * 32, expect=404)
    hook = await endpoint(team, receiver, "/hook", "*")
    path = f"/webhook-endpoints/{hook['id']}"
    _, problem, _ = await team.call("PATCH", path, {"url": "http://10.1.2.3/"}, expect=400)
    assert problem["invalid-params"][0]["name"] == "url"
    await team.call("PATCH", path, {}, expect=400)
    await team.call("POST", f"{path}/deliveries/{'0' * 32}/redeliver", expect=404)


async def test_the_per_team_cap_is_a_setting(
    database_url: str, aiohttp_client: Any, make_key: Any, receiver: Receiver
) -> None:
    settings: Settings = webhook_settings(database_url)
    settings = settings.replace(webhooks={"max_endpoints_per_team": 2})
    client = await aiohttp_client(create_app(settings))
    team = Api(client, await make_key("team", TEAM))
    await endpoint(team, receiver, "/a", "*")
    await endpoint(team, receiver, "/b", "*")
    status, problem, _ = await team.call(
        "POST", "/webhook-endpoints", {"url": receiver.url(), "event_types": ["*"]})
    assert status == 409 and problem["code"] == "too_many_endpoints", problem
    assert "max_endpoints_per_team" in problem["detail"]
    other = Api(client, await make_key("other", TEAM + 1))
    await endpoint(other, receiver, "/c", "*")  # the cap is per team


async def test_fifo_holds_for_a_team_endpoint_under_retries(
    team: Api, receiver: Receiver
) -> None:
    hook = await endpoint(team, receiver, "/hook", "message.created")
    receiver.then("/hook", status(500), status(503))
    conversation_id = await team.create_conversation()
    for i in range(4):
        await team.post_message(conversation_id, f"m{i}")
    await eventually(lambda: len({r.webhook_id for r in receiver.at()}) >= 4)
    contents = [r.verify(hook["secret"])["data"]["message"]["content"] for r in receiver.at()]
    firsts = list(dict.fromkeys(contents))
    assert firsts == ["m0", "m1", "m2", "m3"]
    assert contents[:3] == ["m0", "m0", "m0"]  # the head is retried before the next goes


async def test_every_event_type_is_in_the_openapi_webhooks_section(api: Api) -> None:
    _, document, _ = await api.call("GET", "/openapi.json", expect=200)
    assert set(document["webhooks"]) == set(EVENT_TYPES)
    for event_type, summary in EVENT_TYPES.items():
        operation = document["webhooks"][event_type]["post"]
        assert operation["summary"] == summary
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert {"properties": {"type": {"const": event_type}}} in schema["allOf"]
    manual = (Path(__file__).parents[2] / "docs" / "webhooks.md").read_text()
    for event_type in EVENT_TYPES:
        assert f"`{event_type}`" in manual, event_type


async def test_run_action_and_participant_events_reach_a_filtered_endpoint(
    team: Api, receiver: Receiver
) -> None:
    """The agent features' events go through the same fan-out: a `run.*` endpoint gets the run's
    life and nothing else; an `action.answered` + `participant.*` one gets those."""
    runs = await endpoint(team, receiver, "/runs", "run.*")
    people = await endpoint(team, receiver, "/people", "action.answered", "participant.*")
    cid = await team.create_conversation()
    await team.call("PUT", f"/conversations/{cid}/participants/helper",
                    {"kind": "agent", "name": "Helper"}, expect=201)
    _, run, _ = await team.call("POST", f"/conversations/{cid}/runs", {"agent": "helper"},
                                expect=201)
    path = f"/conversations/{cid}/runs/{run['id']}"
    await team.call("PATCH", path, {"status": "running"}, expect=200)
    asked = await team.post_message(cid, "Send it?", type="AGENT_OUTPUT", run_id=run["id"],
                                    action={"kind": "confirm", "prompt": "Send it?"})
    await team.call("POST", f"/conversations/{cid}/messages/{asked['id']}/answer",
                    {"option": "yes"}, expect=200)
    await team.call("PATCH", path, {"status": "running"}, expect=200)  # the agent goes on
    await team.call("PATCH", path, {"status": "completed"}, expect=200)
    await receiver.wait_for(5, "/runs")
    got = [r.verify(runs["secret"]) for r in receiver.at("/runs")]
    assert [e["type"] for e in got] == ["run.created"] + ["run.updated"] * 4
    assert [e["data"]["run"]["status"] for e in got] == [
        "queued", "running", "requires_action", "running", "completed"]
    await receiver.wait_for(2, "/people")
    assert types(receiver.at("/people"), people["secret"]) == [
        "participant.joined", "action.answered"]
