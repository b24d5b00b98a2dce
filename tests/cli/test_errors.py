"""Start-up and CLI failures an operator can act on: one or two lines naming what failed and the
setting to change, exit code 2 for usage and configuration, 1 at run time, no tracebacks, no
warnings, and `keys` never creating a database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from chatserver import __version__
from tests.localhost import free_port


def chatserver(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHATSERVER_")}
    return subprocess.run(
        [sys.executable, "-m", "chatserver", *args], env={**clean, **env}, cwd=cwd,
        capture_output=True, text=True, timeout=90,
    )


def short(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines of stderr that are not log records (those carry a timestamp and a level)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    return [line for line in lines if not line[:4].isdigit()]


def test_version(tmp_path: Path) -> None:
    result = chatserver("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"chatserver {__version__}"


def test_keys_refuse_to_create_a_database(tmp_path: Path) -> None:
    result = chatserver("keys", "list", cwd=tmp_path)
    assert result.returncode == 1
    lines = short(result)
    assert len(lines) == 2 and "no database in" in lines[0], lines
    assert "CHATSERVER_DATABASE_URL" in lines[1]
    assert not (tmp_path / ".chatserver").exists()


def test_unreachable_database_is_two_lines(tmp_path: Path) -> None:
    url = f"postgresql://bob:secret@127.0.0.1:{free_port()}/chat"
    result = chatserver("serve", cwd=tmp_path, CHATSERVER_DATABASE_URL=url,
                        CHATSERVER_SERVER_PORT=str(free_port()))
    assert result.returncode == 1
    lines = short(result)
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("chatserver: cannot reach the database at postgresql://bob@127.0.0.1")
    assert "secret" not in result.stderr
    assert "CHATSERVER_DATABASE_URL" in lines[1]


def test_port_in_use_names_the_setting(tmp_path: Path, database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = chatserver("serve", cwd=tmp_path, CHATSERVER_DATABASE_URL=database_url,
                            CHATSERVER_SERVER_HOST="127.0.0.1", CHATSERVER_SERVER_PORT=str(port))
    assert result.returncode == 1
    lines = short(result)
    assert lines[0] == (
        f"chatserver: cannot listen on 127.0.0.1:{port}: the address is already in use.")
    assert "CHATSERVER_SERVER_PORT" in lines[1]


def test_a_bad_key_id_is_a_usage_error(tmp_path: Path, database_url: str) -> None:
    result = chatserver("keys", "revoke", "nope", cwd=tmp_path,
                        CHATSERVER_DATABASE_URL=database_url)
    assert result.returncode == 2
    assert "'nope' is not a key id" in result.stderr and "Traceback" not in result.stderr


def test_revoking_an_unknown_key_is_one_line(tmp_path: Path, database_url: str) -> None:
    result = chatserver("keys", "revoke", "0" * 32, cwd=tmp_path,
                        CHATSERVER_DATABASE_URL=database_url)
    assert result.returncode == 1
    assert short(result) == [f"chatserver: no active key with id {'0' * 32}"]


def test_a_misspelt_environment_variable_stops_start_up(tmp_path: Path) -> None:
    result = chatserver("serve", cwd=tmp_path, CHATSERVER_DATABSE_URL="postgresql://x/y")
    assert result.returncode == 2
    assert short(result) == [
        "chatserver: configuration error: unknown environment variable CHATSERVER_DATABSE_URL; "
        "did you mean CHATSERVER_DATABASE_URL?"
    ]


def test_a_normal_command_prints_no_warning(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "pgdata")
    migrated = chatserver("migrate", cwd=tmp_path, CHATSERVER_DATABASE_DATA_DIR=data_dir)
    assert migrated.returncode == 0, migrated.stderr
    result = chatserver("keys", "list", cwd=tmp_path, CHATSERVER_DATABASE_DATA_DIR=data_dir)
    assert result.returncode == 0
    assert short(result) == []
