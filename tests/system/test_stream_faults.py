"""kill -9 of the instance an agent streams through: no acknowledged delta is lost, the other
instance aborts the stream as idle (Postgres tells it, no timer of the dead one), its sockets get
the final message, and the webhooks say message.completed once.

Two real `chatserver serve` processes (the Procfile's command), a real Redis, the session's
Postgres; the stack of chaos/stack.py with a short [streams] idle_timeout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from chaos.clients import auth
from chaos.stack import Stack
from tests.webhooks.helpers import eventually

WAIT = 60.0
WORDS = [f" w{i}" for i in range(400)]


class SessionPostgres:
    """The session's Postgres, as much of chaos.processes.Postgres as Stack uses."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url


async def agent(ws: aiohttp.ClientWebSocketResponse, mid: str, acked: list[int]) -> None:
    """Sends deltas without waiting for each ack, and records every ack until the socket dies."""

    async def read() -> None:
        async for msg in ws:
            frame = orjson.loads(msg.data)
            if frame["type"] == "ack":
                acked.append(frame["next_index"])

    reading = asyncio.create_task(read())
    try:
        for i, word in enumerate(WORDS):
            await ws.send_str(orjson.dumps({"type": "message.delta", "message_id": mid,
                                            "index": i, "text": word}).decode())
            await asyncio.sleep(0.01)
    except (ConnectionError, RuntimeError):
        pass  # the instance died under us
    await reading


async def test_kill9_loses_no_acknowledged_delta_and_the_stream_ends_idle(
    postgres_admin_dsn: str, tmp_path: Path,
) -> None:
    env = {"CHATSERVER_STREAMS_IDLE_TIMEOUT": "1.0"}
    async with Stack(SessionPostgres(postgres_admin_dsn), tmp_path, "streams",  # type: ignore[arg-type]
                     instances=2, **env) as stack:
        doomed, survivor = stack.instances
        http = stack.http
        assert http is not None
        cid = await stack.conversation()
        watcher = await http.ws_connect(f"{survivor.url}/ws/conversations/{cid}?since=0",
                                        headers=auth(stack.key))
        ws = await http.ws_connect(f"{doomed.url}/ws/conversations/{cid}",
                                   headers=auth(stack.key))
        await ws.send_str(orjson.dumps({"type": "message", "content": "", "stream": True}).decode())
        while (frame := orjson.loads((await ws.receive()).data))["type"] != "ack":
            pass
        mid = frame["message"]["id"]
        acked: list[int] = []
        streaming = asyncio.create_task(agent(ws, mid, acked))
        await eventually(lambda: len(acked) >= 20, WAIT)
        doomed.kill()
        await asyncio.wait_for(streaming, WAIT)
        highest_ack = max(acked)

        async def aborted() -> Any:
            async with http.get(f"{survivor.url}/conversations/{cid}/messages",
                                headers=auth(stack.key)) as resp:
                [message] = await resp.json()
            return message["stream"]["state"] != "open" and message

        message = await eventually(aborted, WAIT)
        assert message["stream"]["state"] == "aborted"
        assert message["stream"]["reason"] == "idle"
        # Every acknowledged delta is there, and the text is exactly the deltas committed.
        assert message["stream"]["next_index"] >= highest_ack
        assert message["content"] == "".join(WORDS[:message["stream"]["next_index"]])

        async def final_frame() -> Any:
            async for msg in watcher:
                frame = orjson.loads(msg.data)
                if frame["type"] == "message.updated":
                    return frame["message"]
            return None

        assert await asyncio.wait_for(final_frame(), WAIT) == message
        await watcher.close()
        conn = await asyncpg.connect(stack.database_url)
        try:
            events = await conn.fetch(
                "SELECT event_type FROM webhook_deliveries WHERE conversation_id = $1::uuid "
                "ORDER BY position", cid)
        finally:
            await conn.close()
        assert [e["event_type"] for e in events] == ["message.created", "message.completed"]
