"""Small statistics: latency percentiles and CPU seconds of a tree of processes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psutil


def percentiles(latencies_ns: Sequence[int]) -> dict[str, float | None]:
    """p50, p99 and max in milliseconds (None when nothing was sampled)."""
    if not latencies_ns:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "samples": 0}
    ordered = sorted(latencies_ns)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] / 1e6, 2)

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": round(ordered[-1] / 1e6, 2),
            "samples": n}


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """User + system CPU seconds of the processes `roots`, their live descendants, and (through
    each process's children_* counters) their descendants that already exited and were reaped.
    A difference of two readings is the CPU the tree spent in between, even if processes came
    and went (an exited child's whole time moves into its parent's children_* counters)."""
    seen: set[int] = set()
    total = 0.0
    for pid in roots:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system + t.children_user + t.children_system
    return total


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total
