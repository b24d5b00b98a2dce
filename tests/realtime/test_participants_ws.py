"""Participants on the websocket: authors in frames, observers, agent and user credentials,
message.update, joins and leaves, read frames, and a removed participant's socket."""

from __future__ import annotations

from typing import Any

from chatserver.appkeys import DB_POOL, SOCKETS
from chatserver.auth.keys import create_api_key
from tests.auth.test_tokens import mint
from tests.conftest import Api
from tests.realtime.helpers import Watcher, closed_with, frame_of, ready, send, watch


async def token_socket(api: Api, cid: str, participant: str, **body: Any) -> Any:
    token = await mint(api, cid, participant, **body)
    ws = await api.client.ws_connect(f"/ws/conversations/{cid}?token={token}")
    await ready(ws)
    return ws


async def test_authors_in_frames_acks_and_history(api: Api, db: Any) -> None:
    cid = await api.create_conversation()
    alice = await token_socket(api, cid, "alice")
    agent = await token_socket(api, cid, "helper", kind="agent")
    await send(alice, type="message", content="hello", client_id="a1")
    ack = await frame_of(alice, "ack")
    assert ack["message"]["author"] == {"id": "alice", "kind": "user", "name": "alice"}
    assert ack["message"]["created_by"] == "alice"
    seen = await frame_of(agent, "message")
    assert seen["message"]["author"]["kind"] == "user"
    await send(agent, type="message", content="hi, how can I help?", client_id="g1")
    ack = await frame_of(agent, "ack")
    assert ack["message"]["type"] == "AGENT_OUTPUT"  # the agent's default
    assert ack["message"]["author"] == {"id": "helper", "kind": "agent", "name": "helper"}
    await api.post_message(cid, "notice", type="SYSTEM")
    await api.post_message(cid, "from the backend")
    _, history, _ = await api.call("GET", f"/conversations/{cid}/messages?order=asc", expect=200)
    assert [m["author"]["kind"] for m in history] == ["user", "agent", "system", "integration"]
    assert history[3]["author"] == {"id": "admin", "kind": "integration", "name": "admin"}
    # An agent key (chatserver keys create --agent) writes as its agent, created on first use.
    key, _ = await create_api_key(db, "bot-key", None, agent="triage")
    _, posted, _ = await Api(api.client, key).call(
        "POST", f"/conversations/{cid}/messages", {"content": "triaged"}, expect=201)
    assert posted["author"] == {"id": "triage", "kind": "agent", "name": "triage"}
    assert posted["type"] == "AGENT_OUTPUT" and posted["created_by"] == "bot-key"
    for ws in (alice, agent):
        await ws.close()


async def test_observers_read_but_may_not_send_or_type(api: Api) -> None:
    cid = await api.create_conversation()
    await api.call("PUT", f"/conversations/{cid}/participants/olga",
                   {"kind": "operator", "role": "observer"}, expect=201)
    olga = await token_socket(api, cid, "olga")
    for frame in ({"type": "message", "content": "psst", "client_id": "o1"},
                  {"type": "typing", "client_id": "o2"}):
        await send(olga, **frame)
        error = await frame_of(olga, "error")
        assert error["code"] == "invalid" and error["client_id"] == frame["client_id"]
        assert [p["name"] for p in error["invalid_params"]] == ["type"]
    await api.post_message(cid, "she still reads")
    assert (await frame_of(olga, "message"))["message"]["content"] == "she still reads"
    browser = Api(api.client, await mint(api, cid, "olga"))
    await browser.call("POST", f"/conversations/{cid}/messages", {"content": "x"}, expect=400)
    # Presence lists observers apart.
    alice = await token_socket(api, cid, "alice")
    presence = await frame_of(alice, "presence")
    assert (presence["members"], presence["observers"]) == (["alice"], ["olga"])
    await olga.close()
    left = await frame_of(alice, "presence.leave")
    assert left == {"type": "presence.leave", "user": "olga", "observer": True}
    await alice.close()


async def test_agent_and_user_token_permissions(api: Api) -> None:
    cid = await api.create_conversation()
    alice = await token_socket(api, cid, "alice")
    agent = await token_socket(api, cid, "helper", kind="agent")
    await send(agent, type="message", message_type="USER_INPUT", content="x", client_id="g0")
    error = await frame_of(agent, "error")
    assert [p["name"] for p in error["invalid_params"]] == ["message_type"]
    await send(agent, type="message", content="working on it", status="PROCESSING",
               client_id="g1")
    own = (await frame_of(agent, "ack"))["message"]
    await send(alice, type="message", content="thanks", client_id="a1")
    theirs = (await frame_of(alice, "ack"))["message"]
    # The agent sets status on its own message over the socket...
    await send(agent, type="message.update", message_id=own["id"], status="PROCESSED",
               client_id="u1")
    ack = await frame_of(agent, "ack")
    assert ack["client_id"] == "u1" and ack["message"]["status"] == "PROCESSED"
    updated = await frame_of(alice, "message.updated")
    assert updated["message"]["id"] == own["id"]
    # ...and over REST, but not on someone else's message.
    agent_api = Api(api.client, await mint(api, cid, "helper", kind="agent"))
    url = f"/conversations/{cid}/messages"
    await agent_api.call("PATCH", f"{url}/{own['id']}", {"status": "FAILED"}, expect=200)
    await agent_api.call("PATCH", f"{url}/{theirs['id']}", {"status": "FAILED"}, expect=404)
    await send(agent, type="message.update", message_id=theirs["id"], status="FAILED")
    assert (await frame_of(agent, "error"))["code"] == "not_found"
    # A user token may not change messages at all, and may not pick a type.
    user_api = Api(api.client, await mint(api, cid, "alice"))
    await user_api.call("PATCH", f"{url}/{theirs['id']}", {"status": "FAILED"}, expect=403)
    await send(alice, type="message.update", message_id=theirs["id"], status="PROCESSED")
    assert (await frame_of(alice, "error"))["code"] == "forbidden"
    await send(alice, type="message", message_type="AGENT_OUTPUT", content="x", client_id="a2")
    error = await frame_of(alice, "error")
    assert [p["name"] for p in error["invalid_params"]] == ["message_type"]
    for ws in (alice, agent):
        await ws.close()


async def test_joins_and_leaves_are_frames(api: Api) -> None:
    cid = await api.create_conversation()
    watcher = await watch(api.client, cid, api.key)
    await api.call("PUT", f"/conversations/{cid}/participants/bob", {"name": "Bob"}, expect=201)
    await api.call("PUT", f"/conversations/{cid}/participants/bob", {"name": "Bob"}, expect=200)
    await mint(api, cid, "carol")  # created on mint: a join too
    await api.call("DELETE", f"/conversations/{cid}/participants/bob", expect=204)
    await watcher.until(lambda: len(participant_frames(watcher)) >= 3)
    assert [(f["type"], f["participant"]["id"]) for f in participant_frames(watcher)] == [
        ("participant.joined", "bob"), ("participant.joined", "carol"),
        ("participant.left", "bob")]
    await watcher.close()


def participant_frames(watcher: Watcher) -> list[dict[str, Any]]:
    return [f for f in watcher.frames if f["type"].startswith("participant.")]


async def test_removed_participants_socket_is_closed_at_the_recheck(api: Api) -> None:
    cid = await api.create_conversation()
    alice = await token_socket(api, cid, "alice")
    bob = await token_socket(api, cid, "bob")
    await api.call("DELETE", f"/conversations/{cid}/participants/alice", expect=204)
    app = api.client.server.app
    assert await app[SOCKETS].recheck(app[DB_POOL]) == 1
    assert await closed_with(alice) == 4401
    # Its token cannot open a socket again; bob's socket is untouched.
    token = await mint_raw(api, cid, "alice")
    await api.call("DELETE", f"/conversations/{cid}/participants/alice", expect=204)
    again = await api.client.ws_connect(f"/ws/conversations/{cid}?token={token}")
    assert await closed_with(again) == 4401
    await send(bob, type="message", content="still here", client_id="b1")
    assert (await frame_of(bob, "ack"))["client_id"] == "b1"
    await bob.close()


async def mint_raw(api: Api, cid: str, participant: str) -> str:
    return await mint(api, cid, participant)


async def test_read_frames_are_fanned_out_and_coalesced(api: Api) -> None:
    cid = await api.create_conversation()
    for n in range(5):
        await api.post_message(cid, f"m{n}")
    watcher = await watch(api.client, cid, api.key)
    alice = await token_socket(api, cid, "alice")
    await send(alice, type="read", seq=1)
    await watcher.until(lambda: read_seqs(watcher) == [1])
    # Pipelined reads are handled concurrently, so they may commit in any order; the horizon
    # only moves forward, so at most the newest is fanned out.
    for seq in (2, 3, 4, 2):
        await send(alice, type="read", seq=seq)
    await watcher.until(lambda: read_seqs(watcher)[-1] == 4)
    # The first went out at once; the rest within the interval are held and only the newest sent
    # ([1, 4]; on a machine so loaded that the sends spread over seconds, still fewer frames than
    # reads, rising, and never the stale 2 after 4).
    seqs = read_seqs(watcher)
    assert seqs[0] == 1 and seqs[-1] == 4 and seqs == sorted(set(seqs)) and len(seqs) < 5
    _, listed, _ = await api.call("GET", f"/conversations/{cid}/participants", expect=200)
    assert listed[0]["last_read_seq"] == 4
    await send(alice, type="read", seq=9)
    error = await frame_of(alice, "error")
    assert [p["name"] for p in error["invalid_params"]] == ["seq"]
    await send(watcher.ws, type="read", seq=1)  # an integration key has no horizon
    await watcher.until(lambda: any(f["type"] == "error" for f in watcher.frames))
    await alice.close()
    await watcher.close()


def read_seqs(watcher: Watcher) -> list[int]:
    return [f["seq"] for f in watcher.frames if f["type"] == "read"]
