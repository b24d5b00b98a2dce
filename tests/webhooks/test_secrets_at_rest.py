"""Secrets at rest: with `[security] secret_key`, webhook secrets and the token signing key are
stored encrypted; plain rows from before keep working and are encrypted at start; a rotated key
(`previous_keys`) still decrypts while rows are re-encrypted; without a key a warning is logged."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
import pytest

from chatserver.app import create_app
from chatserver.appkeys import TOKENS
from chatserver.cli import run_secrets_rotate
from chatserver.config import ConfigError, SecuritySettings, Settings
from chatserver.security.box import PREFIX, SecretBox
from tests.conftest import Api
from tests.webhooks.helpers import Receiver, hooked_conversation, webhook_settings

KEY_A = "a" * 16 + "first-key-for-tests-0123456789"
KEY_B = "b" * 16 + "second-key-for-tests-987654321"


def keyed(database_url: str, key: str = "", previous: tuple[str, ...] = ()) -> Settings:
    return webhook_settings(database_url).replace(
        security={"secret_key": key, "previous_keys": previous})


@pytest.fixture
def start(database_url: str, aiohttp_client: Any, make_key: Any) -> Any:
    """Start an app with these keys; an admin key's client for it."""
    async def make(key: str = "", previous: tuple[str, ...] = ()) -> Api:
        app = create_app(keyed(database_url, key, previous))
        return Api(await aiohttp_client(app), await make_key("admin"))

    return make


async def stored_secrets(db: asyncpg.Connection, conversation_id: str) -> Any:
    return await db.fetchrow(
        "SELECT secret, previous_secret FROM webhook_endpoints WHERE conversation_id = $1",
        uuid.UUID(conversation_id))


async def signing_key_row(db: asyncpg.Connection) -> bytes:
    return bytes(await db.fetchval("SELECT secret FROM signing_secrets WHERE name = $1",
                                   "browser_tokens"))


async def test_webhook_secrets_are_stored_encrypted_and_still_sign(
    start: Any, receiver: Receiver, db: asyncpg.Connection
) -> None:
    api = await start(KEY_A)
    conversation_id, secret = await hooked_conversation(api, receiver)
    row = await stored_secrets(db, conversation_id)
    assert row["secret"].startswith(PREFIX) and secret not in row["secret"]
    assert SecretBox([KEY_A]).open(row["secret"]) == secret
    await api.post_message(conversation_id, "signed with the decrypted secret")
    [first] = await receiver.wait_for(1)
    first.verify(secret)

    _, rotated, _ = await api.call(
        "POST", f"/conversations/{conversation_id}/webhook-secret/rotate", expect=200)
    row = await stored_secrets(db, conversation_id)
    assert row["secret"].startswith(PREFIX) and row["previous_secret"].startswith(PREFIX)
    assert rotated["webhook_secret"] not in row["secret"]
    await api.post_message(conversation_id, "after rotation")
    second = (await receiver.wait_for(2))[1]
    second.verify(rotated["webhook_secret"])
    second.verify(secret)  # the previous secret signs too during the grace period


async def test_plain_rows_keep_working_and_are_encrypted_at_start(
    start: Any, receiver: Receiver, db: asyncpg.Connection
) -> None:
    plain = await start()
    conversation_id, secret = await hooked_conversation(plain, receiver)
    token, _ = plain.client.app[TOKENS].issue(uuid.UUID(conversation_id), "alice", None, 600)
    assert (await stored_secrets(db, conversation_id))["secret"] == secret
    plain_signing_key = await signing_key_row(db)
    assert not plain_signing_key.startswith(PREFIX.encode())
    await plain.client.close()

    api = await start(KEY_A)
    row = await stored_secrets(db, conversation_id)
    assert row["secret"].startswith(PREFIX)
    signing_key = await signing_key_row(db)
    assert signing_key.startswith(PREFIX.encode()) and plain_signing_key not in signing_key
    # The same signing key, decrypted: a token issued before still verifies.
    assert api.client.app[TOKENS].verify(token) is not None
    await api.post_message(conversation_id, "after encryption at start")
    [received] = await receiver.wait_for(1)
    received.verify(secret)


async def test_previous_keys_decrypt_while_rows_move_to_the_new_key(
    start: Any, receiver: Receiver, db: asyncpg.Connection
) -> None:
    old = await start(KEY_A)
    conversation_id, secret = await hooked_conversation(old, receiver)
    await old.client.close()

    api = await start(KEY_B, (KEY_A,))
    stored = (await stored_secrets(db, conversation_id))["secret"]
    assert SecretBox([KEY_B]).open(stored) == secret  # re-encrypted under the new key only
    assert SecretBox([KEY_B]).is_current(bytes(await signing_key_row(db)).decode())
    await api.post_message(conversation_id, "after the key rotation")
    [received] = await receiver.wait_for(1)
    received.verify(secret)


async def test_secrets_rotate_command_reencrypts(
    start: Any, database_url: str, receiver: Receiver, db: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain = await start()
    conversation_id, secret = await hooked_conversation(plain, receiver)
    await plain.client.close()
    await run_secrets_rotate(keyed(database_url, KEY_A))
    assert "re-encrypted 2 row(s)" in capsys.readouterr().out  # the endpoint and the signing key
    assert SecretBox([KEY_A]).open((await stored_secrets(db, conversation_id))["secret"]) == secret
    await run_secrets_rotate(keyed(database_url, KEY_A))
    assert "re-encrypted 0 row(s)" in capsys.readouterr().out


async def test_without_a_key_secrets_stay_plain_and_a_warning_is_logged(
    start: Any, receiver: Receiver, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="chatserver.security.rotation")
    api = await start()
    assert any("secret_key is not set" in r.getMessage() for r in caplog.records)
    conversation_id, secret = await hooked_conversation(api, receiver)
    assert (await stored_secrets(db, conversation_id))["secret"] == secret


def test_box_round_trips_and_refuses_foreign_keys() -> None:
    from chatserver.security.box import SecretKeyError

    box = SecretBox([KEY_A])
    sealed = box.seal("whsec_x")
    assert sealed.startswith(PREFIX) and box.open(sealed) == "whsec_x"
    assert box.open("whsec_plain") == "whsec_plain"
    assert box.open_bytes(box.seal_bytes(b"\x00\xffkey")) == b"\x00\xffkey"
    with pytest.raises(SecretKeyError):
        SecretBox([KEY_B]).open(sealed)
    with pytest.raises(SecretKeyError):
        SecretBox().open(sealed)
    assert not SecretBox([KEY_B, KEY_A]).is_current(sealed)
    assert SecretBox([KEY_B, KEY_A]).open(sealed) == "whsec_x"


def test_security_settings_from_the_environment() -> None:
    settings = Settings.load(None, environ={
        "CHATSERVER_SECURITY_SECRET_KEY": KEY_B,
        "CHATSERVER_SECURITY_PREVIOUS_KEYS": KEY_A,
    })
    assert settings.security == SecuritySettings(secret_key=KEY_B, previous_keys=(KEY_A,))
    with pytest.raises(ConfigError, match="secret_key"):
        SecretBox.from_settings(SecuritySettings(secret_key="short"))
    with pytest.raises(ConfigError, match="previous_keys"):
        SecretBox.from_settings(SecuritySettings(secret_key=KEY_A, previous_keys=("short",)))


async def test_a_process_without_the_key_refuses_to_start_on_encrypted_rows(
    start: Any, database_url: str, receiver: Receiver,
) -> None:
    from aiohttp.test_utils import TestServer

    from chatserver.security.box import SecretKeyError

    keyed_api = await start(KEY_A)
    await hooked_conversation(keyed_api, receiver)
    await keyed_api.client.close()
    for key in ("", KEY_B):
        server = TestServer(create_app(keyed(database_url, key)))
        try:
            with pytest.raises(SecretKeyError, match="secret_key"):
                await server.start_server()
        finally:
            await server.close()


async def test_team_endpoint_secrets_are_stored_encrypted_and_still_sign(
    start: Any, receiver: Receiver, db: asyncpg.Connection
) -> None:
    api = await start(KEY_A)
    _, endpoint, _ = await api.call("POST", "/webhook-endpoints", {
        "url": receiver.url("/team"), "event_types": ["conversation.created"]}, expect=201)
    stored = await db.fetchval("SELECT secret FROM webhook_endpoints WHERE id = $1",
                               uuid.UUID(endpoint["id"]))
    assert stored.startswith(PREFIX) and endpoint["secret"] not in stored
    await api.create_conversation()
    [request] = await receiver.wait_for(1, "/team")
    assert request.verify(endpoint["secret"])["type"] == "conversation.created"
    _, tested, _ = await api.call("POST", f"/webhook-endpoints/{endpoint['id']}/test",
                                  expect=200)
    assert tested["success"] is True
    (await receiver.wait_for(2, "/team"))[1].verify(endpoint["secret"])
