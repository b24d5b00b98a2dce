"""Streamed messages' limits: open streams per conversation, text size, deltas per second."""

from __future__ import annotations

import pytest

from chatserver.config import Settings
from tests.api.test_streams_api import append, listed, open_stream
from tests.conftest import Api


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings().replace(database={"url": database_url, "pool_min_size": 1},
                              streams={"max_open_per_conversation": 2, "max_text_bytes": 10,
                                       "deltas_per_second": 5.0})


async def test_limits(api: Api) -> None:
    cid = await api.create_conversation()
    first = (await open_stream(api, cid))["id"]
    await open_stream(api, cid)
    status, problem, _ = await api.call("POST", f"/conversations/{cid}/messages",
                                        {"content": "", "stream": True})
    assert status == 409
    assert problem["invalid-params"][0]["name"] == "stream"
    # Too much text: 413, nothing applied.
    _, problem = await append(api, cid, first, (0, "12345"), (1, "678901"), expect=413)
    [*_, stored] = await listed(api, cid)
    assert stored["content"] == ""
    # Over deltas_per_second (5, a burst of 5): 429, nothing applied.
    await append(api, cid, first, *[(i, "x") for i in range(5)])
    status, _ = await append(api, cid, first, (5, "y"), expect=429)
    [*_, stored] = await listed(api, cid)
    assert stored["content"] == "xxxxx"
    # A closed stream leaves room for another.
    await api.call("POST", f"/conversations/{cid}/messages/{first}/abort", {}, expect=200)
    await open_stream(api, cid)


async def test_final_content_over_the_limit(api: Api) -> None:
    cid = await api.create_conversation()
    mid = (await open_stream(api, cid))["id"]
    status, problem, _ = await api.call(
        "POST", f"/conversations/{cid}/messages/{mid}/complete", {"content": "x" * 11})
    assert status == 413
    assert problem["invalid-params"][0]["name"] == "content"
