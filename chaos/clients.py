"""The clients of a chaos scenario, each recording what it actually saw.

- `Subscriber`: a websocket that resumes with `since` (on any live instance) whenever it is cut.
- `RestPublisher` / `SocketPublisher`: post numbered messages; a message counts as acknowledged
  only on a 201 or an `ack` frame. A failed attempt is retried with the same client_id (the
  documented, idempotent way), on another instance if its own is gone.
- `Receiver`: a webhook endpoint on 127.0.0.1 that records every request (optionally slowly).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

log = logging.getLogger("chaos.clients")

RETRY_PAUSE = 0.1
ACK_WAIT = 10.0

Urls = Callable[[], list[str]]  # base URLs of the instances


@dataclass
class Outcome:
    """What one publisher saw."""

    sent: set[str] = field(default_factory=set)  # client_ids attempted at least once
    acked: dict[str, int] = field(default_factory=dict)  # client_id -> seq
    statuses: Counter[str] = field(default_factory=Counter)  # failed attempts by status/kind
    retry_after_missing: int = 0


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Subscriber:
    """Reads one conversation's socket, resuming with `since` after every cut."""

    def __init__(self, urls: Urls, start: int, cid: str, key: str) -> None:
        self.urls = urls
        self.turn = start
        self.cid = cid
        self.key = key
        self.seqs: list[int] = []
        self.close_codes: list[int | None] = []
        self.resumes = 0
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self, http: aiohttp.ClientSession) -> Subscriber:
        self.task = asyncio.create_task(self._run(http))
        await asyncio.wait_for(self._ready.wait(), ACK_WAIT)
        return self

    async def _run(self, http: aiohttp.ClientSession) -> None:
        while True:
            url = self._next_url()
            params = {"since": str(self.seqs[-1])} if self.seqs else {}
            try:
                async with http.ws_connect(f"{url}/ws/conversations/{self.cid}",
                                           headers=auth(self.key), params=params) as ws:
                    await self._read(ws)
                    self.close_codes.append(ws.close_code)
            except (aiohttp.ClientError, OSError):
                pass
            self.resumes += 1
            await asyncio.sleep(RETRY_PAUSE)

    def _next_url(self) -> str:
        urls = self.urls()
        self.turn += 1
        return urls[self.turn % len(urls)]

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return
            frame = orjson.loads(msg.data)
            if frame["type"] == "message":
                self.seqs.append(frame["message"]["seq"])
                self._changed.set()
            elif frame["type"] == "ready":
                self._ready.set()

    async def has_seq(self, seq: int, timeout: float) -> None:
        async def wait() -> None:
            while not self.seqs or self.seqs[-1] < seq:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class Publisher:
    """Posts messages numbered `<tag>-<n>` to one conversation, starting on instance `start`."""

    def __init__(self, urls: Urls, start: int, cid: str, key: str, tag: str,
                 pause: float) -> None:
        self.urls = urls
        self.turn = start
        self.cid = cid
        self.key = key
        self.tag = tag
        self.pause = pause
        self.outcome = Outcome()

    def url(self) -> str:
        urls = self.urls()
        return urls[self.turn % len(urls)]


class RestPublisher(Publisher):
    """POSTs numbered messages until told to stop; retries each until acknowledged."""

    async def run(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> Outcome:
        for i in itertools.count():
            if stop.is_set():
                return self.outcome
            client_id = f"{self.tag}-{i}"
            self.outcome.sent.add(client_id)
            await self._post_until_acked(http, client_id)
            await asyncio.sleep(self.pause)
        raise AssertionError("unreachable")

    async def _post_until_acked(self, http: aiohttp.ClientSession, client_id: str) -> None:
        while True:
            try:
                async with http.post(f"{self.url()}/conversations/{self.cid}/messages",
                                     json={"content": client_id, "client_id": client_id},
                                     headers=auth(self.key)) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status == 201:
                        self.outcome.acked[client_id] = body["seq"]
                        return
                    self._failed(str(resp.status), resp.headers)
            except (aiohttp.ClientError, OSError) as exc:
                self._failed(type(exc).__name__, None)
                self.turn += 1  # its instance may be gone: try the next one
            await asyncio.sleep(RETRY_PAUSE)

    def _failed(self, kind: str, headers: Any) -> None:
        self.outcome.statuses[kind] += 1
        if kind == "503" and "Retry-After" not in headers:
            self.outcome.retry_after_missing += 1


class SocketPublisher(Publisher):
    """Sends numbered messages over its own websocket, each after the previous ack; one cut off
    before its ack is sent again, with the same client_id, on the next socket."""

    pending: str | None = None  # sent, not acknowledged yet

    async def run(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> Outcome:
        numbers = itertools.count()
        while not stop.is_set() or self.pending is not None:
            try:
                async with http.ws_connect(f"{self.url()}/ws/conversations/{self.cid}",
                                           headers=auth(self.key)) as ws:
                    await self._session(ws, stop, numbers)
            except (aiohttp.ClientError, OSError) as exc:
                self.outcome.statuses[type(exc).__name__] += 1
            self.turn += 1
            await asyncio.sleep(RETRY_PAUSE)
        return self.outcome

    async def _session(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event,
                       numbers: Any) -> None:
        """Send until stopped or cut off."""
        while True:
            if self.pending is None:
                if stop.is_set():
                    return
                self.pending = f"{self.tag}-{next(numbers)}"
                self.outcome.sent.add(self.pending)
            await ws.send_str(orjson.dumps(
                {"type": "message", "content": self.pending, "client_id": self.pending}).decode())
            reply = await self._reply(ws, self.pending)
            if reply is None:
                self.outcome.statuses[f"closed {ws.close_code}"] += 1
                return
            if reply["type"] == "ack":
                self.outcome.acked[self.pending] = reply["message"]["seq"]
                self.pending = None
                await asyncio.sleep(self.pause)
            else:
                self.outcome.statuses[reply.get("code", "error")] += 1
                await asyncio.sleep(reply.get("retry_after", RETRY_PAUSE) / 4)

    @staticmethod
    async def _reply(ws: aiohttp.ClientWebSocketResponse, client_id: str) -> dict[str, Any] | None:
        """The ack or error frame for `client_id`; None when the socket closed first."""
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), ACK_WAIT)
            except TimeoutError:
                return None
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return None
            frame = orjson.loads(msg.data)
            if frame["type"] in ("ack", "error") and frame.get("client_id") == client_id:
                return frame


@dataclass
class Hook:
    path: str
    payload: dict[str, Any]


class Receiver:
    """A webhook endpoint on 127.0.0.1. `/slow/<seconds>` answers after that many seconds."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def handle(self, request: web.Request) -> web.Response:
        self.hooks.append(Hook(request.path, orjson.loads(await request.read())))
        self.arrived.set()
        if request.path.startswith("/slow/"):
            await asyncio.sleep(float(request.path.rsplit("/", 1)[1]))
        return web.Response(text="ok")

    def created_seqs(self, cid: str) -> list[int]:
        """Seqs of message.created events for `cid`, in arrival order (repeats included)."""
        return [h.payload["data"]["message"]["seq"] for h in self.hooks
                if h.payload["type"] == "message.created"
                and h.payload["data"]["conversation_id"] == cid]

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
