"""How long the disk under Postgres takes to sync, measured beside a scenario.

While the scenario measures, a thread appends 8 KiB to a file in Postgres's data directory's
filesystem and `fdatasync`s it, `RATE` times a second, timing each sync: the distribution of
what a WAL flush costs on that disk at that moment (a commit with `synchronous_commit = on` waits
for one). Postgres's own flushes go on beside it; the probe adds about 80 KiB/s of writes.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from bench.stats import percentiles

RATE = 10  # syncs per second
BLOCK = b"\0" * 8192


class FsyncProbe:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "fsync-probe"
        self.durations: list[int] = []  # ns
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> dict[str, float | int | None]:
        """The probe's figures: syncs, p50/p99/max ms."""
        self.stopping.set()
        self.thread.join()
        self.path.unlink(missing_ok=True)
        figures = percentiles(self.durations)
        return {"fsyncs": len(self.durations), "fsync_p50_ms": figures["p50_ms"],
                "fsync_p99_ms": figures["p99_ms"], "fsync_max_ms": figures["max_ms"]}

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while not self.stopping.wait(1 / RATE):
                os.write(fd, BLOCK)
                start = time.monotonic_ns()
                os.fdatasync(fd)
                self.durations.append(time.monotonic_ns() - start)
        finally:
            os.close(fd)
