"""Bad input over REST is a 4xx naming what is wrong, never a 500, through a real server: cursors
out of the datetime range, header values that are not UTF-8, integers beyond signed 64 bits,
numbers that are not ASCII digits, and control characters that would forge access-log lines."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from chatserver.app import create_app
from chatserver.config import Settings
from chatserver.server.logs import AccessLogger
from tests import rawhttp
from tests.conftest import Api
from tests.logcapture import captured_log

OUT_OF_RANGE_STAMPS = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                       "2024-05-01T12:00:00", "0001-01-01T00:00:00"]
BAD_KEYS = [b"csk_\xff\xfe" + b"a" * 40, b"csk_abcdefghijkl\xc3\x28rest", b"\xff\xff"]
HUGE_INTEGERS = [2**64, 10**30, -(2**63) - 1, 2**64 - 1, 2**63]
NOT_ASCII_NUMBERS = ["²", "①", "٣", "１", " 5", "1_0", "+5", "99999999999999999999999"]


def opaque(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def names(body: Any) -> set[str]:
    return {p["name"] for p in body["invalid-params"]}


async def raw(api: Api, method: str, target: bytes, headers: rawhttp.Headers,
              body: bytes = b"") -> tuple[int, Any]:
    server = api.client.server
    return await rawhttp.request(server.host, server.port, method, target, headers, body)


def bearer(api: Api) -> rawhttp.Headers:
    return [(b"Authorization", b"Bearer " + str(api.key).encode())]


@pytest.mark.parametrize("stamp", OUT_OF_RANGE_STAMPS)
async def test_cursor_with_an_out_of_range_date_is_400(api: Api, stamp: str) -> None:
    cursor = opaque(f"{stamp}|{'0' * 32}")
    _, body, _ = await api.call("GET", f"/conversations?before={cursor}", expect=400)
    assert names(body) == {"before"}
    cursor = opaque(f"{stamp}|12")
    _, body, _ = await api.call("GET", f"/users/7/workflow-conversations?before={cursor}",
                                expect=400)
    assert names(body) == {"before"}
    _, body, _ = await api.call(
        "GET", f"/users/7/workflow-conversations?running=true&before={cursor}", expect=400)
    assert names(body) == {"before"}


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00"])
async def test_cursor_at_the_ends_of_the_range_is_a_page(api: Api, stamp: str) -> None:
    await api.create_conversation()
    _, page, _ = await api.call("GET", f"/conversations?before={opaque(stamp + '|' + '0' * 32)}",
                                expect=200)
    assert len(page) == (stamp.startswith("9999"))


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_a_credential_that_is_not_utf8_is_401(api: Api, key: bytes) -> None:
    status, body = await raw(api, "GET", b"/conversations", [(b"Authorization", b"Bearer " + key)])
    assert status == 401, body


async def test_an_idempotency_key_that_is_not_utf8_is_400(api: Api) -> None:
    cid = await api.create_conversation()
    for value in (b"\xff\xfe", b"key-\xc3\x28", b"a\x80"):
        status, body = await raw(
            api, "POST", f"/conversations/{cid}/messages".encode(),
            [*bearer(api), (b"Idempotency-Key", value), (b"Content-Type", b"application/json")],
            b'{"content": "hi"}')
        assert status == 400, body
        assert names(body) == {"Idempotency-Key"}


@pytest.mark.parametrize("number", HUGE_INTEGERS)
async def test_integers_beyond_64_bits_are_400_naming_the_field(api: Api, number: int) -> None:
    cid = await api.create_conversation()
    body = f'{{"content": "x", "metadata": {{"n": [1, {number}]}}}}'.encode()
    _, problem, _ = await api.call("POST", f"/conversations/{cid}/messages", data=body,
                                   headers={"Content-Type": "application/json"}, expect=400)
    assert names(problem) == {"metadata.n[1]"}
    _, problem, _ = await api.call(
        "POST", "/workflow-conversations", data=f'{{"user_id": 1, "agent_product_id": 1, '
        f'"configuration": {{"deep": {{"n": {number}}}}}}}'.encode(),
        headers={"Content-Type": "application/json"}, expect=400)
    assert names(problem) == {"configuration.deep.n"}
    _, messages, _ = await api.call("GET", f"/conversations/{cid}/messages", expect=200)
    assert messages == []


async def test_floats_of_any_size_are_still_floats(api: Api) -> None:
    cid = await api.create_conversation()
    message = await api.post_message(cid, "x", metadata={"big": 1.8446744073709552e+19,
                                                         "exp": 1e30, "small": 2**63 - 1})
    assert message["metadata"] == {"big": 1.8446744073709552e+19, "exp": 1e30,
                                   "small": 2**63 - 1}


async def test_numbers_in_queries_in_range_are_read(api: Api) -> None:
    cid = await api.create_conversation()
    for n in range(3):
        await api.post_message(cid, str(n))
    _, page, _ = await api.call("GET", f"/conversations/{cid}/messages?limit=02&before=3",
                                expect=200)
    assert [m["seq"] for m in page] == [2, 1]
    _, page, _ = await api.call("GET", f"/conversations/{cid}/messages?after=-0&limit=1",
                                expect=200)
    assert len(page) == 1


@pytest.mark.parametrize("number", NOT_ASCII_NUMBERS)
@pytest.mark.parametrize("param", ["limit", "before", "after"])
async def test_numbers_in_queries_are_ascii_digits(api: Api, number: str, param: str) -> None:
    cid = await api.create_conversation()
    status, body = await raw(
        api, "GET", f"/conversations/{cid}/messages?{param}={quote(number)}".encode(), bearer(api))
    assert status == 400, body
    assert names(body) == {param}


@pytest.mark.parametrize("path_id", ["%C2%B2", "%E2%91%A0", "-1", "0", "9223372036854775808",
                                     "1" * 40])
async def test_path_ids_out_of_range_are_4xx(api: Api, path_id: str) -> None:
    for target in (f"/workflow-conversations/{path_id}",
                   f"/users/{path_id}/workflow-conversations"):
        status, body = await raw(api, "GET", target.encode(), bearer(api))
        assert 400 <= status < 500, (target, status, body)


@pytest.mark.parametrize("hex_id", ["%D9%A3" * 32, "0_" * 16, "%20" + "0" * 31,
                                    "urn:uuid:" + "0" * 27, "%EF%BC%91" * 32])
async def test_hex_ids_are_ascii_hex_digits(api: Api, hex_id: str) -> None:
    status, body = await raw(api, "GET", f"/conversations/{hex_id}".encode(), bearer(api))
    assert status == 400, body
    assert names(body) == {"conversation_id"}


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    with captured_log("aiohttp.access") as out:
        yield out


async def test_control_characters_in_a_path_are_escaped_in_the_access_log(
    access_lines: io.StringIO, settings: Settings, aiohttp_client: Any,
) -> None:
    server = TestServer(create_app(settings))
    await server.start_server(access_log_class=AccessLogger)
    client: TestClient = await aiohttp_client(server)
    status, _ = await rawhttp.request(
        server.host, server.port, "GET",
        b"/conversations/x%0D%0A1.2.3.4%20%22GET%20/forged%22%20200%1b[31m%00", [])
    assert status == 404
    await client.close()
    lines = access_lines.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "\\r\\n1.2.3.4" in lines[0] and "\\x1b" in lines[0] and "\\x00" in lines[0], lines
