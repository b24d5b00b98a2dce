"""The `chatserver` command: serve, worker (the webhook dispatcher alone), migrate, API key
management, re-encryption of stored secrets, and a demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from chatserver import __version__
from chatserver.auth.keys import create_api_key
from chatserver.cli.errors import explain, require_existing_database
from chatserver.cli.processes import run_processes
from chatserver.cli.serve import run_serve
from chatserver.config import Settings
from chatserver.db.bootstrap import resolve_dsn, run_migrations
from chatserver.demo import create_demo
from chatserver.security.box import SecretBox
from chatserver.security.rotation import reseal_all
from chatserver.server.logs import setup_logging
from chatserver.services.participants import PARTICIPANT_ID, PARTICIPANT_ID_REASON
from chatserver.store import api_keys
from chatserver.webhooks.context import run_dispatcher

DEFAULT_CONFIG = "config.toml"


def _participant_id(text: str) -> str:
    if PARTICIPANT_ID.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(PARTICIPANT_ID_REASON)
    return text


def load_settings(path: str | None) -> Settings:
    """--config PATH, else CHATSERVER_CONFIG, else ./config.toml when present, else defaults."""
    path = path or os.environ.get("CHATSERVER_CONFIG")
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    return Settings.load(path)


async def _with_db(settings: Settings) -> asyncpg.Connection:
    dsn = await resolve_dsn(settings)
    await run_migrations(dsn, partitions=settings.database.partitions)
    return await asyncpg.connect(dsn)


async def run_migrate(settings: Settings) -> None:
    dsn = await resolve_dsn(settings)
    applied = await run_migrations(dsn, partitions=settings.database.partitions)
    print(f"applied {len(applied)} migration(s): {applied}" if applied else "schema is up to date")


async def run_secrets_rotate(settings: Settings) -> None:
    box = SecretBox.from_settings(settings.security)
    if not box.enabled:
        print("[security] secret_key is not set: nothing to encrypt", file=sys.stderr)
        return
    conn = await _with_db(settings)
    try:
        changed = await reseal_all(conn, box)
    finally:
        await conn.close()
    print(f"re-encrypted {changed} row(s) with [security] secret_key")


async def run_keys(settings: Settings, args: argparse.Namespace) -> int:
    conn = await _with_db(settings)
    try:
        if args.keys_command == "create":
            key, row = await create_api_key(conn, args.name, args.team, args.agent)
            print(key)
            agent = f" agent={row['agent']}" if row["agent"] else ""
            print(f"id={row['id'].hex} name={row['name']} team={row['team_id']}{agent}",
                  file=sys.stderr)
        elif args.keys_command == "list":
            for row in await api_keys.list_keys(conn):
                state = "revoked" if row["revoked_at"] else "active"
                print(f"{row['id'].hex}  {row['name']}  team={row['team_id']}  {state}  "
                      f"created={row['created_at']:%Y-%m-%d %H:%M}")
        elif args.keys_command == "revoke":
            if not await api_keys.revoke_key(conn, args.id):
                print(f"chatserver: no active key with id {args.id.hex}", file=sys.stderr)
                return 1
            print(f"revoked {args.id.hex}")
    finally:
        await conn.close()
    return 0


async def run_demo(settings: Settings, args: argparse.Namespace) -> None:
    base_url = args.base_url or f"http://localhost:{settings.server.port}"
    conversation_id, links = await create_demo(settings, args.user or ["alice", "bob"], base_url,
                                               args.ttl)
    print(f"Created conversation {conversation_id}. Open the chat page (one tab per user):\n")
    for link in links:
        print(f"  {link.user}: {link.url}")
    print("\nStart the server first if it is not running: chatserver serve")


def user_name(text: str) -> str:
    if not 1 <= len(text) <= 200:
        raise argparse.ArgumentTypeError("a user name has 1 to 200 characters")
    return text


def key_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(hex=text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a key id (32 hex characters, as `chatserver keys list` shows)"
        ) from None


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatserver", description=__doc__)
    parser.add_argument("--version", action="version", version=f"chatserver {__version__}")
    parser.add_argument("--config", help="settings file (default: ./config.toml if present)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP and websocket server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the port (more than 1 needs [redis] url)")
    sub.add_parser("migrate", help="apply pending database migrations")
    worker = sub.add_parser("worker", help="run the webhook dispatcher alone")
    worker.add_argument("--burst", action="store_true", help="exit once nothing is due")
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--team", type=int, default=None, help="team id (omit for an admin key)")
    create.add_argument("--agent", type=_participant_id, default=None, metavar="NAME",
                        help="the key writes as agent participant NAME (AGENT_OUTPUT by default)")
    keys_sub.add_parser("list", help="list keys (never the secrets)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=key_id, help="the key's id, as `keys list` shows it")
    secrets = sub.add_parser("secrets", help="secrets stored in the database")
    secrets_sub = secrets.add_subparsers(dest="secrets_command", required=True)
    secrets_sub.add_parser("rotate", help="re-encrypt every stored secret with [security] "
                           "secret_key (plain-text rows and rows under previous_keys)")
    demo = sub.add_parser("demo", help="create a conversation and browser tokens; print page URLs")
    demo.add_argument("--user", action="append", type=user_name,
                      help="a user to make a token for (repeat; default: alice and bob)")
    demo.add_argument("--ttl", type=positive_int, help="token lifetime in seconds "
                      "(default [realtime] token_ttl_default)")
    demo.add_argument("--base-url", help="where the server is (default http://localhost:PORT)")
    return parser


def serve_processes(settings: Settings, processes: int) -> int:
    setup_logging(settings.server.log_level, settings.server.log_format)
    return run_processes(settings, processes)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        settings = settings.replace(server=overrides) if overrides else settings
        if args.workers != 1:
            return serve_processes(settings, args.workers)
        run_serve(settings)
    elif args.command == "migrate":
        asyncio.run(run_migrate(settings))
    elif args.command == "worker":
        setup_logging(settings.server.log_level)
        asyncio.run(run_dispatcher(settings, burst=args.burst))
    elif args.command == "keys":
        require_existing_database(settings)
        return asyncio.run(run_keys(settings, args))
    elif args.command == "secrets":
        require_existing_database(settings)
        asyncio.run(run_secrets_rotate(settings))
    elif args.command == "demo":
        require_existing_database(settings)
        asyncio.run(run_demo(settings, args))
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = None
    try:
        settings = load_settings(args.config)
        code = run_command(args, settings)
    except Exception as exc:
        explained = explain(exc, settings)
        if explained is None:
            raise
        message, code = explained
        print(f"chatserver: {message}", file=sys.stderr)
    sys.exit(code)
