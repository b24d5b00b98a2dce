"""Which errors mean "Postgres cannot be reached right now", as opposed to a bug or bad input.

An outage reaches asyncpg in several shapes, depending on the moment it hits: connecting fails with
an OSError (refused, a missing unix socket, a timeout: TimeoutError is an OSError too), a pooled
connection that the server closed raises ConnectionDoesNotExistError or InterfaceError, a server
shutting down or starting up answers with SQLSTATE 57P01/57P02/57P03, a full server with 53300, and
a connection whose server vanished mid-protocol can surface as InternalClientError. All of them are
transient: the pool reconnects on its next acquire, so callers answer "retry later" and keep no
state about the failure.
"""

from __future__ import annotations

import asyncpg
from asyncpg import exceptions as pg

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    pg.InternalClientError,
    pg.AdminShutdownError,
    pg.CrashShutdownError,
    pg.CannotConnectNowError,
    pg.TooManyConnectionsError,
)


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE_ERRORS)

# What a background loop (reconciliation, credential re-checks, gauges read by query) logs and
# retries on its next round: an outage, a timeout or any error Postgres answered with.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *UNAVAILABLE_ERRORS, TimeoutError, asyncpg.PostgresError,
)
