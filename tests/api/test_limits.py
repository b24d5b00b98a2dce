"""Per-key REST rate limits (429 + Retry-After) and CORS for allowed origins."""

from __future__ import annotations

from typing import Any

from chatserver.app import create_app
from chatserver.config import Settings
from tests.conftest import Api


async def test_rate_limit_per_key(settings: Settings, aiohttp_client: Any, make_key: Any) -> None:
    limited = settings.replace(limits={"requests_per_second_per_key": 0.5,
                                       "request_burst_per_key": 3})
    client = await aiohttp_client(create_app(limited))
    first, second = Api(client, await make_key("a")), Api(client, await make_key("b"))
    statuses = [(await first.call("GET", "/conversations"))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    status, body, headers = await first.call("GET", "/conversations")
    assert status == 429
    assert int(headers["Retry-After"]) >= 1
    assert body["status"] == 429
    # Another key has its own bucket.
    assert (await second.call("GET", "/conversations"))[0] == 200


async def test_cors_for_allowed_origins_only(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    client = await aiohttp_client(create_app(settings.replace(
        server={"cors_origins": ("https://app.example.com",)})))
    api = Api(client, await make_key())
    preflight = await client.options("/conversations", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    _, _, headers = await api.call("GET", "/conversations",
                                   headers={"Origin": "https://app.example.com"})
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Link" in headers["Access-Control-Expose-Headers"]
    _, _, headers = await api.call("GET", "/conversations", headers={"Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in headers
