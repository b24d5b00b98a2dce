"""Webhook test helpers: a real HTTP receiver on 127.0.0.1, a DNS-free resolver, bounded waits."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks import Webhook

from chatserver.config import Settings
from tests.conftest import Api

WAIT = 20.0  # seconds; only a hang reaches it


def webhook_settings(database_url: str, **webhooks: Any) -> Settings:
    """Test settings: loopback allowed explicitly, a fast retry schedule, quick polling."""
    values: dict[str, Any] = {
        "allowed_networks": ("127.0.0.0/8",),
        "schedule": (0.05, 0.05, 0.05),
        "jitter": 0.0,
        "backoff_floor": 0.05,
        "poll_interval": 0.05,
        "timeout": 5.0,
    }
    values.update(webhooks)
    return Settings().replace(
        database={"url": database_url, "pool_min_size": 1}, webhooks=values
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> Any:
        """The payload, verified by the standardwebhooks package (raises if the signature fails)."""
        return Webhook(secret).verify(self.body, self.headers)


Reply = Callable[[Received], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass
class Receiver:
    """Records every request; answers from a per-path script of replies, then 200."""

    requests: list[Received] = field(default_factory=list)
    script: dict[str, list[Reply]] = field(default_factory=dict)
    base_url: str = ""

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    def then(self, path: str, *replies: Reply) -> None:
        self.script.setdefault(path, []).extend(replies)

    def at(self, path: str = "/hook") -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.path, dict(request.headers), await request.read())
        self.requests.append(received)
        queue = self.script.get(request.path)
        if not queue:
            return web.Response(text="ok")
        reply = queue.pop(0)(received)
        if asyncio.iscoroutine(reply):
            reply = await reply
        return reply  # type: ignore[return-value]

    async def wait_for(self, count: int, path: str = "/hook") -> list[Received]:
        await eventually(lambda: len(self.at(path)) >= count)
        return self.at(path)


def status(code: int, **headers: str) -> Reply:
    return lambda _r: web.Response(status=code, text=f"status {code}", headers=headers)


async def start_receiver(aiohttp_server: Any) -> Receiver:
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    receiver.base_url = str(server.make_url("")).rstrip("/")
    return receiver


async def eventually(check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll `check` (sync or async) until truthy; fail only if it never becomes so (a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


class StaticResolver(AbstractResolver):
    """Maps names to fixed addresses, so tests need no DNS server."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.names:
            raise OSError(f"no such host: {host}")
        return [
            {"hostname": host, "host": ip, "port": port,
             "family": socket.AF_INET6 if ":" in ip else socket.AF_INET, "proto": 0, "flags": 0}
            for ip in self.names[host]
        ]

    async def close(self) -> None:
        return None


async def hooked_conversation(api: Api, receiver: Receiver, path: str = "/hook") -> tuple[str, str]:
    """A conversation whose callback_url is the receiver: (id, webhook_secret)."""
    _, created, _ = await api.call(
        "POST", "/conversations",
        {"channel": "API", "config": {"callback_url": receiver.url(path)}}, expect=201,
    )
    return created["id"], created["webhook_secret"]
