"""The command line: run the chosen scenarios one after another, one summary line each."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from chaos.processes import Postgres
from chaos.scenarios import FULL, SCENARIOS, SHORT, Timing
from chaos.stack import Report

SCENARIO_LIMIT = 240.0  # seconds; a scenario that takes longer is hung
LOG_LINES = 60


async def run(names: Sequence[str], timing: Timing, workdir: Path) -> list[Report]:
    postgres = await asyncio.to_thread(Postgres, workdir / "pgdata")
    reports = []
    try:
        for name in names:
            try:
                async with asyncio.timeout(SCENARIO_LIMIT):
                    report = await SCENARIOS[name](postgres, workdir, timing)
            except Exception as exc:  # a scenario that breaks is a failed scenario
                report = Report(name, failures=[f"{type(exc).__name__}: {exc}"])
            print(report.line(), flush=True)
            reports.append(report)
    finally:
        await asyncio.to_thread(postgres.remove)
    return reports


def show_logs(workdir: Path, name: str) -> None:
    """Each instance's log, without the access lines, to stderr."""
    for log in sorted(workdir.glob(f"{name}-*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if "aiohttp.access" not in line]
        print(f"--- {log.name}", *lines[-LOG_LINES:], sep="\n", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="scenario",
                        help=f"any of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--short", action="store_true", help="short phases (for CI)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and print where")
    args = parser.parse_args(argv)
    names = args.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    workdir = Path(tempfile.mkdtemp(prefix="chatserver-chaos-"))
    reports = asyncio.run(run(names, SHORT if args.short else FULL, workdir))
    failed = [r.name for r in reports if r.failures]
    for name in failed:
        show_logs(workdir, name)
    if args.keep:
        print(f"logs in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if failed else 0)
