"""The `chatserver` command: keys, migrate, and `serve` with the embedded Postgres default."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.localhost import REPO, free_port


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatserver", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )


@pytest.fixture
async def uncached_client(settings: Any, aiohttp_client: Any) -> Any:
    """A server that looks every API key up (by default it remembers one for a few seconds)."""
    from chatserver.app import create_app

    return await aiohttp_client(create_app(settings.replace(performance={"api_key_cache_ttl": 0})))


async def test_keys_create_list_revoke(database_url: str, uncached_client: Any) -> None:
    client = uncached_client
    env = {"CHATSERVER_DATABASE_URL": database_url}
    created = run_cli("keys", "create", "--name", "backend", "--team", "9", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert re.fullmatch(r"csk_[A-Za-z0-9_-]{40,}", key)
    resp = await client.get("/conversations", headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200
    listed = run_cli("keys", "list", env=env)
    assert "backend" in listed.stdout and "team=9" in listed.stdout
    assert key not in listed.stdout
    key_id = listed.stdout.split()[0]
    revoked = run_cli("keys", "revoke", key_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert run_cli("keys", "revoke", key_id, env=env).returncode == 1
    resp = await client.get("/conversations", headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 401


async def test_keys_create_agent_writes_as_that_agent(
    database_url: str, uncached_client: Any
) -> None:
    env = {"CHATSERVER_DATABASE_URL": database_url}
    created = run_cli("keys", "create", "--name", "bot", "--agent", "triage", env=env)
    assert created.returncode == 0, created.stderr
    assert "agent=triage" in created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    resp = await uncached_client.post("/conversations", json={"channel": "API"}, headers=headers)
    cid = (await resp.json())["id"]
    resp = await uncached_client.post(f"/conversations/{cid}/messages", json={"content": "hi"},
                                      headers=headers)
    message = await resp.json()
    assert message["author"] == {"id": "triage", "kind": "agent", "name": "triage"}
    assert message["type"] == "AGENT_OUTPUT"
    bad = run_cli("keys", "create", "--name", "bot", "--agent", "no spaces", env=env)
    assert bad.returncode == 2 and "URL-safe" in bad.stderr


async def test_migrate_is_idempotent_and_safe_concurrently(database_url: str) -> None:
    env = {"CHATSERVER_DATABASE_URL": database_url}
    procs = [
        subprocess.Popen([sys.executable, "-m", "chatserver", "migrate"], env={**os.environ, **env},
                         stdout=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]  # also closes the pipes
    assert all(p.returncode == 0 for p in procs)
    assert all("up to date" in out for out in outputs)
    conn = await asyncpg.connect(database_url)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()
    assert len(versions) == len(set(versions)) >= 1


async def test_migrate_refuses_partitions_it_cannot_create(database_url: str, api: Any) -> None:
    """A populated plain messages table (or one of another partition count) is never converted:
    start-up stops in one line naming the setting."""
    await api.post_message(await api.create_conversation(), "stays where it is")
    result = run_cli("migrate", env={"CHATSERVER_DATABASE_URL": database_url,
                                     "CHATSERVER_DATABASE_PARTITIONS": "3"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("chatserver: ") and "[database] partitions = 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_stops_startup_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("[server]\nportt = 1\n")
    result = run_cli("--config", str(tmp_path / "c.toml"), "serve", env={})
    assert result.returncode != 0
    assert "[server] portt" in result.stderr


@pytest.mark.timeout(120)
async def test_serve_with_embedded_postgres_prints_a_working_key(tmp_path: Path) -> None:
    """The README's first command: no database configured, a key printed, the seed's calls work,
    on uvloop."""
    port = free_port()
    env = {**os.environ, "PORT": str(port),
           "CHATSERVER_DATABASE_DATA_DIR": str(tmp_path / "pgdata"),
           "CHATSERVER_DATABASE_URL": "", "CHATSERVER_SERVER_HOST": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "chatserver", "serve"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        key = None
        seen = []
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            match = re.search(r"Bearer (csk_[A-Za-z0-9_-]+)", line)
            if match:
                key = match[1]
            if "Running on" in line:
                break
        assert key, "no key printed:\n" + "".join(seen)[-3000:]
        # uvloop is a dependency of the README's install, and the log says it runs.
        assert any("event loop: uvloop" in line for line in seen), "".join(seen)[-3000:]
        headers = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{port}/api"
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{base}/conversations", json={
                "channel": "API", "usecase": "WORKFLOW_EXECUTION",
                "config": {"workflow_id": "84", "callback_url": "https://example.com/webhook"},
            }) as resp:
                assert resp.status == 201
                conversation_id = (await resp.json())["id"]
            async with http.post(f"{base}/conversations/{conversation_id}/messages",
                                 json={"content": "hello"}) as resp:
                assert resp.status == 201
            async with http.get(f"{base}/conversations/{conversation_id}/messages") as resp:
                assert [m["content"] for m in await resp.json()] == ["hello"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
