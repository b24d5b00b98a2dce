"""The input-policy gate: a busy conversation never waits for its policy, and a change still
applies within `[runs] policy_cache_ttl`."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from chatserver.appkeys import DB_POOL, RUNS
from chatserver.models import InputDuringRun
from chatserver.services.inputgate import InputGate
from tests.conftest import Api


def answered_at_once(gate: InputGate, conversation_id: uuid.UUID) -> InputDuringRun:
    """The check's answer, asserting it came without the coroutine suspending."""
    check = gate.check(conversation_id)
    with pytest.raises(StopIteration) as done:
        check.send(None)
    return done.value.value  # type: ignore[no-any-return]


async def settled(gate: InputGate) -> None:
    while gate.reads:
        await asyncio.sleep(0.01)


async def test_a_policy_past_half_its_time_is_used_and_read_again_behind(api: Api) -> None:
    gate = InputGate(api.client.server.app[DB_POOL], ttl=0.6)
    cids = [await api.create_conversation(config={"on_input_during_run": "allow"})
            for _ in range(3)]
    ids = [uuid.UUID(cid) for cid in cids]
    for cid in ids:
        assert await gate.check(cid) is InputDuringRun.ALLOW
        assert answered_at_once(gate, cid) is InputDuringRun.ALLOW
        assert not gate.reads  # young: nothing to read again
    for cid in cids:
        await api.call("PATCH", f"/conversations/{cid}",
                       {"config": {"on_input_during_run": "interrupt"}}, expect=200)
    await asyncio.sleep(0.35)
    # Past half its time: the remembered policy answers at once, and all three are read again
    # by one query behind them.
    assert [answered_at_once(gate, cid) for cid in ids] == [InputDuringRun.ALLOW] * 3
    assert len(gate.reads) == 1 and gate.due == set(ids)
    await settled(gate)
    assert [answered_at_once(gate, cid) for cid in ids] == [InputDuringRun.INTERRUPT] * 3


async def test_a_policy_past_its_time_is_read_before_the_message(api: Api) -> None:
    gate = InputGate(api.client.server.app[DB_POOL], ttl=0.2)
    cid = await api.create_conversation(config={"on_input_during_run": "allow"})
    assert await gate.check(uuid.UUID(cid)) is InputDuringRun.ALLOW
    await api.call("PATCH", f"/conversations/{cid}",
                   {"config": {"on_input_during_run": "reject"}}, expect=200)
    await asyncio.sleep(0.25)
    assert await gate.check(uuid.UUID(cid)) is InputDuringRun.REJECT



async def test_conversations_starting_at_once_share_one_read(api: Api) -> None:
    gate = InputGate(api.client.server.app[DB_POOL], ttl=5.0)
    ids = [uuid.UUID(await api.create_conversation(config={"on_input_during_run": policy}))
           for policy in ("allow", "interrupt", "enqueue")]
    gone = uuid.uuid4()
    checks = [asyncio.ensure_future(gate.check(cid)) for cid in (*ids, gone)]
    await asyncio.sleep(0)
    assert len(gate.reads) == 1 and gate.due == {*ids, gone}
    assert await asyncio.gather(*checks) == [
        InputDuringRun.ALLOW, InputDuringRun.INTERRUPT, InputDuringRun.ENQUEUE,
        InputDuringRun.ALLOW]
    assert set(gate.known) == set(ids)


async def test_storing_a_message_reads_its_conversations_policy_on_the_way(api: Api) -> None:
    gate = api.client.server.app[RUNS].inputs
    cid = await api.create_conversation(config={"on_input_during_run": "allow"})
    await api.post_message(cid, "first")
    assert gate.known[uuid.UUID(cid)][1] is InputDuringRun.ALLOW
    await api.call("PATCH", f"/conversations/{cid}",
                   {"config": {"on_input_during_run": "interrupt"}}, expect=200)
    await api.post_message(cid, "second")  # checked against the remembered policy, not read
    assert not gate.reads
    assert gate.known[uuid.UUID(cid)][1] is InputDuringRun.INTERRUPT
