"""Shared fixtures: a real Postgres per session, a fresh database per test, apps and API clients."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from chatserver.app import create_app
from chatserver.auth.keys import create_api_key
from chatserver.config import Settings
from chatserver.db.dsn import with_database
from chatserver.db.pool import init_connection
from tests import databases
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> Iterator[str]:
    handle, dsn = databases.start_test_postgres()
    yield dsn
    if handle is not None:
        handle.cleanup()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (tests that stop Redis start their own)."""
    server = RedisServer().start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """One 3-primary + 3-replica Redis Cluster for the session (started on first use)."""
    cluster = RedisCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def template_database(postgres_admin_dsn: str) -> str:
    return asyncio.run(databases.create_template(postgres_admin_dsn))


@pytest.fixture
async def database_url(postgres_admin_dsn: str, template_database: str) -> AsyncIterator[str]:
    name = await databases.create_test_database(postgres_admin_dsn, template_database)
    yield with_database(postgres_admin_dsn, name)
    await databases.drop_database(postgres_admin_dsn, name)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings().replace(database={"url": database_url, "pool_min_size": 1,
                                        "partitions": databases.partitions_under_test()})


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's database, for arranging and asserting."""
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    yield conn
    await conn.close()


def next_link(headers: Any) -> str | None:
    link = headers.get("Link")
    return re.match(r"<([^>]+)>; rel=\"next\"", link)[1] if link else None


class Api:
    """A test client that sends one API key (or token) and decodes JSON."""

    def __init__(self, client: TestClient, key: str | None) -> None:
        self.client = client
        self.key = key

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        headers.update(extra or {})
        return headers

    async def call(
        self, method: str, path: str, json: Any = None, *, expect: int | None = None,
        headers: dict[str, str] | None = None, data: Any = None,
    ) -> tuple[int, Any, Any]:
        resp = await self.client.request(
            method, path, json=json, data=data, headers=self.headers(headers)
        )
        body = await resp.json(content_type=None) if await resp.read() else None
        if expect is not None:
            assert resp.status == expect, (resp.status, body)
        return resp.status, body, resp.headers

    async def create_conversation(self, **body: Any) -> str:
        body.setdefault("channel", "API")
        _, created, _ = await self.call("POST", "/conversations", body, expect=201)
        return created["id"]

    async def post_message(self, conversation_id: str, content: str, **body: Any) -> Any:
        _, message, _ = await self.call(
            "POST", f"/conversations/{conversation_id}/messages", {"content": content, **body},
            expect=201,
        )
        return message


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def make_key(db: asyncpg.Connection) -> Any:
    async def make(name: str = "tester", team_id: int | None = None) -> str:
        key, _ = await create_api_key(db, name, team_id)
        return key

    return make


@pytest.fixture
async def api(client: TestClient, make_key: Any) -> Api:
    """An admin key's client."""
    return Api(client, await make_key("admin"))


@pytest.fixture
def api_for(client: TestClient, make_key: Any) -> Any:
    async def make(team_id: int | None, name: str = "team-key") -> Api:
        return Api(client, await make_key(name, team_id))

    return make
