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


async def test_failed_authentications_are_throttled_per_address_before_the_lookup(
    settings: Settings, aiohttp_client: Any, make_key: Any
) -> None:
    throttled = settings.replace(limits={"failed_auths_per_second_per_address": 0.01,
                                         "failed_auth_burst_per_address": 2})
    client = await aiohttp_client(create_app(throttled))
    good = Api(client, await make_key("good"))
    # Successful authentications cost the address nothing.
    for _ in range(5):
        await good.call("GET", "/conversations", expect=200)
    for n in range(2):
        await Api(client, f"csk_{n:012d}random").call("GET", "/conversations", expect=401)
    status, body, headers = await Api(client, "csk_000000000000more").call("GET", "/conversations")
    assert status == 429 and body["status"] == 429
    assert int(headers["Retry-After"]) >= 1
    # Refused before the credential is looked at: a good key from that address waits too...
    assert (await good.call("GET", "/conversations"))[0] == 429
    # ...and so does a websocket upgrade, closed with 4429 right after it.
    ws = await client.ws_connect("/ws/conversations/" + "0" * 32,
                                 headers={"Authorization": f"Bearer {good.key}"})
    assert (await ws.receive()).data == 4429
    metrics = await (await client.get("/metrics")).text()
    assert 'chatserver_rate_limited_total{limit="failed_auths_per_address"} 3.0' in metrics
