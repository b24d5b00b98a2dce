"""Settings: file + environment, one naming rule, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatserver.config import ConfigError, Settings
from tests.localhost import REPO


def test_shipped_config_toml_holds_the_defaults() -> None:
    assert Settings.load(REPO / "config.toml", environ={}) == Settings()


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 9000\n[database]\nurl = "postgresql://file/db"\n')
    settings = Settings.load(path, environ={
        "CHATSERVER_DATABASE_URL": "postgresql://env/db",
        "CHATSERVER_SERVER_MAX_JSON_DEPTH": "8",
    })
    assert settings.server.port == 9000
    assert settings.database.url == "postgresql://env/db"
    assert settings.server.max_json_depth == 8


def test_port_variable_sets_the_port() -> None:
    assert Settings.load(None, environ={"PORT": "5001"}).server.port == 5001
    settings = Settings.load(None, environ={"PORT": "5001", "CHATSERVER_SERVER_PORT": "5002"})
    assert settings.server.port == 5002


@pytest.mark.parametrize("text, needle", [
    ("[server]\nprot = 1\n", "[server] prot"),
    ("[nosuch]\nx = 1\n", "[nosuch]"),
    ('[server]\nport = "eighty"\n', "[server] port"),
    ("[server\n", "c.toml"),
])
def test_bad_file_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=__import__("re").escape(needle)):
        Settings.load(path, environ={})


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CHATSERVER_SERVER_PORT"):
        Settings.load(None, environ={"CHATSERVER_SERVER_PORT": "http"})


def test_negative_numbers_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[messages\] page_max"):
        Settings.load(None, environ={"CHATSERVER_MESSAGES_PAGE_MAX": "-1"})


def test_choice_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"\[server\] log_format: must be one of text, json"):
        Settings.load(None, environ={"CHATSERVER_SERVER_LOG_FORMAT": "xml"})


def test_json_log_lines(capsys) -> None:
    import json
    import logging

    from chatserver.server.logs import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("INFO", "json")
    try:
        logging.getLogger("chatserver.test").info("hello %s", "there", extra={"request_id": "r1"})
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["msg"] == "hello there"
    assert line["request_id"] == "r1"
    assert line["logger"] == "chatserver.test"
