"""What a failed command prints: one or two lines an operator can act on, and the exit code.

2 for usage and configuration (argparse's own code), 1 for a failure at run time: an unreachable or
refusing database, a port already in use, no database where a command needs one. Anything not
recognised here is a bug, and keeps its traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from chatserver.config import ConfigError, Settings
from chatserver.db.errors import UNAVAILABLE_ERRORS

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class CommandFailed(Exception):
    """A run-time failure already explained in words; `main` prints it and exits 1."""


def database_place(settings: Settings) -> str:
    """Where the database is, for a message: the URL without its password, or the data dir."""
    url = settings.database.url
    if not url:
        return f"the embedded Postgres in {Path(settings.database.data_dir).resolve()}"
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc, query=""))


def require_existing_database(settings: Settings) -> None:
    """Commands that only read or add rows (keys, demo) never create an embedded database."""
    if settings.database.url:
        return
    data_dir = Path(settings.database.data_dir).resolve()
    if not (data_dir / "PG_VERSION").is_file():
        raise CommandFailed(
            f"no database in {data_dir} (the embedded Postgres's [database] data_dir).\n"
            "Run this where `chatserver serve` runs, or set CHATSERVER_DATABASE_URL "
            "(or CHATSERVER_DATABASE_DATA_DIR)."
        )


def explain(exc: BaseException, settings: Settings | None) -> tuple[str, int] | None:
    """The message and exit code for a failure we can name, or None (a bug: let it raise)."""
    if isinstance(exc, ConfigError):
        return f"configuration error: {exc}", EXIT_USAGE
    if isinstance(exc, CommandFailed):
        return str(exc), EXIT_RUNTIME
    if settings is None:
        return None
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        server = settings.server
        return (f"cannot listen on {server.host}:{server.port}: the address is already in use.\n"
                "Stop the other process, or choose another port: [server] port "
                "(CHATSERVER_SERVER_PORT or PORT)."), EXIT_RUNTIME
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):  # bad user or password
        return (f"the database refused the login at {database_place(settings)}: {exc}.\n"
                "Check the user and password in [database] url (CHATSERVER_DATABASE_URL)."), \
            EXIT_RUNTIME
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return (f"{exc} at {database_place(settings)}.\n"
                "Create it, or fix the database name in [database] url "
                "(CHATSERVER_DATABASE_URL)."), EXIT_RUNTIME
    if isinstance(exc, UNAVAILABLE_ERRORS):
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return (f"cannot reach the database at {database_place(settings)}: "
                f"{reason or type(exc).__name__}.\n"
                "Is Postgres running there? Check [database] url (CHATSERVER_DATABASE_URL)."), \
            EXIT_RUNTIME
    return None
