"""GET /metrics serves Prometheus text with request counts and pool state."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api


async def test_metrics_count_requests_by_route(api: Api) -> None:
    conversation_id = await api.create_conversation()
    await api.post_message(conversation_id, "x")
    await api.call("GET", "/conversations/" + "0" * 32)
    resp = await api.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["chatserver_http_requests"].samples if s.name.endswith("_total")
    }
    assert requests[("create_conversation", "201")] == 1
    assert requests[("post_message", "201")] == 1
    assert requests[("get_conversation", "404")] == 1
    pool = {s.labels["state"]: s.value for s in families["chatserver_db_pool_connections"].samples}
    assert pool["idle"] + pool["in_use"] >= 1


async def test_metrics_token_is_required_when_set(
    database_url: str, aiohttp_client: Any,
) -> None:
    from chatserver.app import create_app
    from chatserver.config import Settings

    settings = Settings().replace(
        database={"url": database_url, "pool_min_size": 1}, metrics={"token": "scrape-me-please"}
    )
    client = await aiohttp_client(create_app(settings))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"},
                    {"Authorization": "Bearer scrape-me-pleasé"}):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["status"] == 401
    resp = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"})
    assert resp.status == 200
    assert "chatserver_http_requests" in await resp.text()


def test_metrics_token_from_the_environment() -> None:
    from chatserver.config import Settings

    settings = Settings.load(None, environ={"CHATSERVER_METRICS_TOKEN": "t0ken"})
    assert settings.metrics.token == "t0ken"
