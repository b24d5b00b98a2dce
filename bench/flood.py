"""The flooding tenant of the isolation scenario: its own process, at the lowest CPU priority.

    python -m bench.flood '<spec as JSON>'      (started by bench.isolation)

For `seconds` it runs every flood named in `floods` (see FLOODS) against the first target with the
flooding tenant's key and conversation, then prints one JSON line of what it achieved and exits.
Each flood is a few loops that never wait for the server more than they must; sockets that the
server closes are opened again at once, as an attacker would.

Hook: the webhook part of issue 14.3 (a slow or failing webhook endpoint of the flooding tenant,
another tenant's webhook latency beside it) adds its flood to FLOODS and names it in the
scenario's `floods`; bench.isolation measures the other tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bench.peers.common import install_uvloop, raise_nofile_limit

YIELD_EVERY = 50  # frames sent between two yields to the loop (so closes are noticed)
BAD_KEY_LENGTH = 43


@dataclass
class FloodSpec:
    base: str  # http://127.0.0.1:<port>
    key: str
    room: str
    seconds: float
    floods: dict[str, int]  # flood name -> how many loops run it
    source_ip: str = "127.0.0.2"  # not the quiet tenant's: limits per client address apply
    uvloop: bool = True


@dataclass
class Outcome:
    """What the flood did and how the server answered it."""

    sent: Counter[str] = field(default_factory=Counter)  # frames / requests by flood
    connects: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)  # "<flood>:<close code>"
    statuses: Counter[str] = field(default_factory=Counter)  # "<flood>:<HTTP status>"
    errors: Counter[str] = field(default_factory=Counter)


def random_key() -> str:
    return "csk_" + secrets.token_urlsafe(BAD_KEY_LENGTH)[:BAD_KEY_LENGTH]


Send = Callable[[aiohttp.ClientWebSocketResponse], Awaitable[None]]


async def _socket_flood(name: str, send: Send, session: aiohttp.ClientSession, spec: FloodSpec,
                        out: Outcome, deadline: float) -> None:
    """Open a socket, send as fast as possible until the server closes it, open it again."""
    url = f"{spec.base}/ws/conversations/{spec.room}"
    headers = {"Authorization": f"Bearer {spec.key}"}
    while time.monotonic() < deadline:
        try:
            ws = await session.ws_connect(url, headers=headers)
        except (aiohttp.ClientError, OSError) as exc:
            out.errors[f"{name}:{type(exc).__name__}"] += 1
            await asyncio.sleep(0.01)
            continue
        out.connects[name] += 1
        reader = asyncio.create_task(_read_until_closed(ws))
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
            while not reader.done() and time.monotonic() < deadline:
                for _ in range(YIELD_EVERY):
                    await send(ws)
                out.sent[name] += YIELD_EVERY
                await asyncio.sleep(0)
        if not reader.done():
            await ws.close()
        code = await reader
        out.closes[f"{name}:{code}"] += 1


async def _read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                        aiohttp.WSMsgType.ERROR):
            return ws.close_code


async def pings(session: aiohttp.ClientSession, spec: FloodSpec, out: Outcome,
                deadline: float) -> None:
    await _socket_flood("pings", lambda ws: ws.ping(), session, spec, out, deadline)


MESSAGE = orjson.dumps({"type": "message", "content": "flood"}).decode()


async def frames(session: aiohttp.ClientSession, spec: FloodSpec, out: Outcome,
                 deadline: float) -> None:
    await _socket_flood("frames", lambda ws: ws.send_str(MESSAGE), session, spec, out, deadline)


async def bad_keys(session: aiohttp.ClientSession, spec: FloodSpec, out: Outcome,
                   deadline: float) -> None:
    """REST calls with random keys, back to back."""
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{spec.base}/conversations",
                                   headers={"Authorization": f"Bearer {random_key()}"}) as resp:
                await resp.read()
                out.statuses[f"bad_keys:{resp.status}"] += 1
        except (aiohttp.ClientError, OSError) as exc:
            out.errors[f"bad_keys:{type(exc).__name__}"] += 1
        out.sent["bad_keys"] += 1


async def bad_key_sockets(session: aiohttp.ClientSession, spec: FloodSpec, out: Outcome,
                          deadline: float) -> None:
    """Websocket upgrades with random keys, back to back."""
    url = f"{spec.base}/ws/conversations/{spec.room}"
    while time.monotonic() < deadline:
        try:
            ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {random_key()}"})
            out.closes[f"bad_key_sockets:{await _read_until_closed(ws)}"] += 1
        except (aiohttp.ClientError, OSError) as exc:
            out.errors[f"bad_key_sockets:{type(exc).__name__}"] += 1
        out.sent["bad_key_sockets"] += 1


Flood = Callable[[aiohttp.ClientSession, FloodSpec, Outcome, float], Awaitable[None]]
FLOODS: dict[str, Flood] = {
    "pings": pings, "frames": frames, "bad_keys": bad_keys, "bad_key_sockets": bad_key_sockets,
}


async def amain(spec: FloodSpec) -> Outcome:
    out = Outcome()
    deadline = time.monotonic() + spec.seconds
    connector = aiohttp.TCPConnector(limit=0, local_addr=(spec.source_ip, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(FLOODS[name](session, spec, out, deadline)
                               for name, loops in spec.floods.items() for _ in range(loops)))
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    spec = FloodSpec(**orjson.loads(argv[0]))
    os.nice(19)  # the victim's timing shares this core: the flood only gets what it leaves
    raise_nofile_limit()
    install_uvloop(spec.uvloop)
    out = asyncio.run(amain(spec))
    report: dict[str, Any] = {name: dict(getattr(out, name))
                              for name in ("sent", "connects", "closes", "statuses", "errors")}
    sys.stdout.write(orjson.dumps(report).decode() + "\n")


if __name__ == "__main__":
    main()
