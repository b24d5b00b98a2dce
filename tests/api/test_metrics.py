"""GET /metrics serves Prometheus text with request counts and pool state."""

from __future__ import annotations

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
