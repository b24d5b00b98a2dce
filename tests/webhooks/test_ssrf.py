"""SSRF: private-range callback URLs are refused at create/PATCH and again at delivery."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from chatserver.config import Settings, WebhookSettings
from chatserver.webhooks.sender import WebhookSender
from chatserver.webhooks.ssrf import AddressPolicy, connect_host, literal_address
from tests.conftest import Api
from tests.webhooks.helpers import Receiver, StaticResolver, eventually


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The defaults: nothing private is allowed."""
    return Settings().replace(database={"url": database_url, "pool_min_size": 1})


PRIVATE_URLS = [
    "http://127.0.0.1/hook",
    "http://127.1/hook",
    "http://0x7f.1/hook",
    "http://0177.0.0.1/hook",
    "http://2130706433/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::1]/hook",
    "http://localhost/hook",
    "http://LOCALHOST./hook",
    "http://api.localhost/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "http://240.0.0.1/hook",
    "http://192.0.2.10/hook",
    "http://[fd00::1]/hook",
    "http://[fe80::1]/hook",
    "http://[64:ff9b::a00:1]/hook",
    # Spellings yarl (and so aiohttp) normalises to 127.0.0.1 or localhost (IDNA/UTS 46).
    "http://\u2460\u2461\u2466.0.0.1/hook",  # circled digits
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/hook",  # fullwidth digits
    "http://127\u30020\u30020\u30021/hook",  # ideographic full stops
    "http://\uff11\uff12\uff17.\uff11/hook",  # fullwidth short form
    "http://\u24dbocalhost/hook",  # circled l
    "http://0x7f000001/hook",
    "http://127.0.0.1./hook",
    "http://localhost./hook",
    "http://[::ffff:7f00:1]/hook",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
async def test_private_callback_urls_are_refused_at_create(api: Api, url: str) -> None:
    status, body, _ = await api.call(
        "POST", "/conversations", {"channel": "API", "config": {"callback_url": url}}
    )
    assert status == 400, body
    assert body["invalid-params"][0]["name"] == "config.callback_url"


@pytest.mark.parametrize("url", PRIVATE_URLS)
async def test_private_callback_url_is_refused_by_patch(api: Api, url: str) -> None:
    conversation_id = await api.create_conversation()
    status, body, _ = await api.call(
        "PATCH", f"/conversations/{conversation_id}", {"config": {"callback_url": url}},
    )
    assert status == 400, body
    assert body["invalid-params"][0]["name"] == "config.callback_url"


@pytest.mark.parametrize("url", [
    "http://a\u00adb.example/hook", "http://exa mple.com/hook", "http://a%41.example/hook",
])
async def test_hosts_that_do_not_normalise_to_ascii_are_refused(api: Api, url: str) -> None:
    status, body, _ = await api.call(
        "POST", "/conversations", {"channel": "API", "config": {"callback_url": url}}
    )
    assert status == 400, body
    assert body["invalid-params"][0]["name"] == "config.callback_url"


def test_the_host_is_judged_as_the_client_connects() -> None:
    assert connect_host("http://\u2460\u2461\u2466.0.0.1/") == ("http", "127.0.0.1")
    assert connect_host("https://ex\u00e4mple.com/") == ("https", "xn--exmple-cua.com")
    assert connect_host("ftp://example.com/") is None


@pytest.mark.parametrize("url", [
    "https://example.com/webhook",
    "https://no-such-host.invalid/hook",
    "http://93.184.215.14:8080/hook",
])
async def test_public_or_unresolvable_urls_are_accepted(api: Api, url: str) -> None:
    _, created, _ = await api.call(
        "POST", "/conversations", {"channel": "API", "config": {"callback_url": url}},
        expect=201,
    )
    assert created["webhook_secret"].startswith("whsec_")


async def send_once(settings: WebhookSettings, url: str, names: dict[str, list[str]]) -> Any:
    sender = WebhookSender(settings, resolver=StaticResolver(names))
    await sender.start()
    try:
        return await sender.send(url, "msg_test", b"{}", ["whsec_" + "A" * 32])
    finally:
        await sender.close()


def loopback_forms(receiver: Receiver) -> list[str]:
    port = receiver.base_url.rsplit(":", 1)[1]
    return [f"http://{host}:{port}/hook" for host in (
        "127.0.0.1", "127.1", "0x7f.1", "2130706433", "[::ffff:127.0.0.1]", "localhost",
        "internal.test", "metadata.test", "rebind.test", *UNICODE_LOOPBACK,
        "0x7f000001", "0177.0.0.1", "127.0.0.1.", "localhost.",
    )] + ["http://169.254.169.254/latest/meta-data/"]


UNICODE_LOOPBACK = (
    "\u2460\u2461\u2466.0.0.1", "\uff11\uff12\uff17.\uff10.\uff10.\uff11",
    "127\u30020\u30020\u30021",
)

NAMES = {
    "localhost.": ["127.0.0.1"],
    "internal.test": ["10.0.0.5"],
    "metadata.test": ["169.254.169.254"],
    # One public and one loopback answer: any blocked address refuses the whole name.
    "rebind.test": ["93.184.215.14", "127.0.0.1"],
    "localhost": ["127.0.0.1"],
    "receiver.test": ["127.0.0.1"],
}


async def test_every_private_form_is_refused_at_delivery(receiver: Receiver) -> None:
    settings = WebhookSettings()  # nothing allowed
    for url in loopback_forms(receiver):
        result = await send_once(settings, url, NAMES)
        assert result.status_code == 0, url
        assert result.error.startswith("refused"), (url, result.error)
    assert receiver.requests == []


@pytest.mark.parametrize("host", UNICODE_LOOPBACK)
async def test_endpoint_stored_before_the_fix_is_refused_at_delivery_once(
    api: Api, db: Any, receiver: Receiver, host: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A row written before hosts were normalised: refused, logged, failed for good, no body."""
    caplog.set_level(logging.WARNING, logger="chatserver.webhooks.dispatcher")
    _, created, _ = await api.call(
        "POST", "/conversations",
        {"channel": "API", "config": {"callback_url": "http://93.184.215.14:8080/hook"}},
        expect=201,
    )
    conversation_id = created["id"]
    port = receiver.base_url.rsplit(":", 1)[1]
    await db.execute(
        "UPDATE webhook_endpoints SET url = $1 WHERE conversation_id = $2",
        f"http://{host}:{port}/hook", uuid.UUID(conversation_id),
    )
    await api.post_message(conversation_id, "to a stored loopback spelling")

    async def failed() -> Any:
        _, items, _ = await api.call(
            "GET", f"/conversations/{conversation_id}/webhook-deliveries", expect=200
        )
        return items if items and items[0]["status"] == "failed" else None

    [delivery] = await eventually(failed)
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 0
    assert attempt["error"].startswith("refused"), attempt
    assert attempt["response_body"] == ""
    assert receiver.requests == []
    assert any("refused, not retried" in r.getMessage() for r in caplog.records)


async def test_allowed_network_lets_loopback_through(receiver: Receiver) -> None:
    settings = WebhookSettings(allowed_networks=("127.0.0.0/8",))
    port = receiver.base_url.rsplit(":", 1)[1]
    # The name resolves through the guarded resolver and the request goes to the checked address.
    result = await send_once(settings, f"http://receiver.test:{port}/hook", NAMES)
    assert result.status_code == 200, result
    assert receiver.requests[0].headers["Host"] == f"receiver.test:{port}"
    # 10.x stays refused: only the listed network is let through.
    port_url = f"http://internal.test:{port}/hook"
    assert (await send_once(settings, port_url, NAMES)).error.startswith("refused")


def test_literal_address_reads_every_spelling() -> None:
    for host in ("127.1", "0x7f.1", "0177.0.0.1", "2130706433", "0x7f000001", "127.0.0.1."):
        assert str(literal_address(host)) == "127.0.0.1", host
    for host in ("example.com", "deadbeef", "1.2.3.example", "cafe.be"):
        assert literal_address(host) is None, host


def test_policy_judges_mapped_addresses_by_their_ipv4() -> None:
    import ipaddress

    policy = AddressPolicy(["127.0.0.0/8"])
    assert policy.allows(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not policy.allows(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert not AddressPolicy().allows(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert AddressPolicy().allows(ipaddress.ip_address("93.184.215.14"))


def test_allowed_networks_from_the_environment() -> None:
    settings = Settings.load(None, environ={
        "CHATSERVER_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8, 10.0.0.0/8",
    })
    assert settings.webhooks.allowed_networks == ("127.0.0.0/8", "10.0.0.0/8")


@pytest.mark.parametrize("environ, needle", [
    ({"CHATSERVER_WEBHOOKS_ALLOWED_NETWORKS": "not-a-cidr"}, "allowed_networks"),
    ({"CHATSERVER_WEBHOOKS_ORDERING": "random"}, "ordering"),
])
def test_bad_webhook_settings_name_the_key(environ: dict[str, str], needle: str) -> None:
    from chatserver.config import ConfigError

    with pytest.raises(ConfigError, match=needle):
        Settings.load(None, environ=environ)


async def test_kept_response_body_never_exceeds_the_cap_in_bytes(receiver: Receiver) -> None:
    """Invalid UTF-8 decodes to U+FFFD (3 bytes each): the kept text is cut to the cap again."""
    from aiohttp import web

    receiver.then("/hook", lambda _r: web.Response(status=500, body=b"\xff" * 5000))
    settings = WebhookSettings(allowed_networks=("127.0.0.0/8",), response_body_max=1000)
    result = await send_once(settings, receiver.url("/hook"), {})
    assert result.status_code == 500
    assert 0 < len(result.response_body.encode()) <= 1000


@pytest.mark.parametrize("url", ["http://localhost:9000/hook", "http://127.0.0.1:9000/hook"])
async def test_a_refusal_says_how_to_allow_a_local_receiver(api: Api, url: str) -> None:
    _, body, _ = await api.call("POST", "/conversations",
                                {"channel": "API", "config": {"callback_url": url}}, expect=400)
    assert "[webhooks] allowed_networks" in body["invalid-params"][0]["reason"]
