"""The chaos scenarios (chaos/), short mode, each as its own test: real `chatserver serve`
processes, a real Redis, the embedded Postgres, websocket clients and a webhook receiver.

Each runs `python -m chaos --short <scenario>` and passes only if that scenario held: every
acknowledged message stored, delivered to every socket exactly once in order and to the webhook
receiver at least once (lost=0), plus the scenario's own checks.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.localhost import REPO

LIMIT = 300  # seconds: a scenario that takes longer is hung


def run_scenario(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chaos", "--short", name], cwd=REPO, env=os.environ.copy(),
        capture_output=True, text=True, timeout=LIMIT,
    )
    summary = [line for line in result.stdout.splitlines() if line.startswith(f"{name}:")]
    print(result.stdout)  # the summary line shows with -s, and on failure
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    assert len(summary) == 1 and " lost=0 " in summary[0] and summary[0].endswith("-> ok")


# kill9: kill -9 one of three instances under load. redis: Redis killed and restarted; /readyz
# reports it. postgres: Postgres stopped and restarted; 503 + Retry-After meanwhile, no restart.
# sigterm: graceful shutdown within the deadline; sockets see 1001; claims released.
@pytest.mark.timeout(LIMIT + 30)
@pytest.mark.parametrize("scenario", ["kill9", "redis", "postgres", "sigterm"])
def test_chaos_scenario(scenario: str) -> None:
    run_scenario(scenario)
