"""The runner: `python -m bench [--quick] [--scenarios 2,3] [--servers ours,bare]`.

For each scenario and each server it starts the server side fresh (pinned to --server-core), runs
the load generator in its own process (pinned to --gen-core), measures the CPU seconds of the whole
server side over the generator's measured window and the server's RSS at each idle step, stops the
server, and at the end prints one table: ours, each peer, and ours ÷ peer.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bench import order, pgstats, profile, servers
from bench.fsync_probe import FsyncProbe
from bench.scenarios import FULL, QUICK, Scenario, scenarios
from bench.stats import rss_bytes, tree_cpu_seconds

SETTLE = 1.0  # seconds after an idle step before RSS is read
GEN_MARGIN = 120.0  # seconds beyond a scenario's own bounds before the generator is killed
SERVERS = ("ours", "bare", "socketio")


class Measurement:
    """Drives one load generator process and collects what the server side did meanwhile."""

    def __init__(self, side: servers.ServerSide, scenario: Scenario,
                 profile_dir: Path | None = None, profile_core: str | None = None,
                 fsync_probe: FsyncProbe | None = None) -> None:
        self.side = side
        self.scenario = scenario
        self.fsync_probe = fsync_probe
        self.profile_dir = profile_dir
        self.profile_core = profile_core
        self.profilers: list[tuple[Path, subprocess.Popen[bytes]]] = []
        self.figures: dict[str, Any] = {}
        self.rss0 = 0
        self.cpu0 = self.t0 = 0.0
        self.parts0: dict[str, float] = {}
        self.spublish0: dict[str, int] = {}
        self.pg0: dict[str, int] = {}

    def on_event(self, event: dict[str, Any], reply: Any) -> None:
        kind = event.pop("event")
        if kind == "connected":
            self._on_connected()
            reply("go")
        elif kind == "measured":
            self._on_measured()
        elif kind == "step":
            self.figures[f"kib_at_{event['sockets']}"] = self._kib_per_socket(event["ready"])
            reply("next")
        elif kind == "touched":
            self.figures["kib_after_message"] = self._kib_per_socket(event["ready"])
            reply("next")
        elif kind == "result":
            self.figures = {**event, **self.figures}

    def _on_connected(self) -> None:
        """The measured window starts: profilers, probes and the counters read at its start."""
        self._start_profilers()
        if self.fsync_probe is not None:
            self.fsync_probe.start()
        self.parts0 = self._cpu_parts()
        if self.side.dsn:
            self.pg0 = pgstats.snapshot(self.side.dsn)
        self.spublish0 = self.side.cluster.spublish_calls() if self.side.cluster else {}
        self.cpu0, self.t0 = tree_cpu_seconds(self.side.cpu_pids()), time.monotonic()

    def _on_measured(self) -> None:
        cpu = tree_cpu_seconds(self.side.cpu_pids()) - self.cpu0
        wall = time.monotonic() - self.t0
        if self.fsync_probe is not None:
            self.figures.update(self.fsync_probe.stop())
        self.figures.update(server_cpu_s=round(cpu, 2),
                            server_cpu_pct=round(100 * cpu / wall, 1))
        for part, seconds in self._cpu_parts().items():
            spent = seconds - self.parts0.get(part, 0.0)
            self.figures[f"cpu_pct_{part}"] = round(100 * spent / wall, 1)
        if self.side.cluster:
            self._publish_shares(self.side.cluster.spublish_calls())
        if self.side.dsn:  # last: its own query is not counted
            self.figures.update(pgstats.change(self.pg0, pgstats.snapshot(self.side.dsn), wall))

    def _publish_shares(self, calls: dict[str, int]) -> None:
        """Each primary's share of the SPUBLISH commands run while measuring (n-th primary)."""
        spent = {node: n - self.spublish0.get(node, 0) for node, n in calls.items()}
        total = sum(spent.values()) or 1
        for i, (node, n) in enumerate(sorted(spent.items()), 1):
            self.figures[f"publish_share_{i}"] = round(100 * n / total, 1)
            self.figures[f"cpu_pct_redis{i}"] = self.figures.pop(f"cpu_pct_{node}", None)
        self.figures["cpu_pct_redis"] = round(sum(
            self.figures.get(f"cpu_pct_redis{i}") or 0 for i in range(1, len(spent) + 1)), 1)

    def _cpu_parts(self) -> dict[str, float]:
        """CPU seconds of the server processes and of each helper (Postgres, Redis) apart."""
        parts = {"server": tree_cpu_seconds(self.side.rss_pids())}
        for name, pid in self.side.helpers.items():
            parts[name] = tree_cpu_seconds([pid])
        return parts

    def _start_profilers(self) -> None:
        if self.profile_dir is None:
            return
        seconds = self.scenario.spec.get("duration", 5)
        for i, pid in enumerate(self.side.rss_pids()):
            out = self.profile_dir / f"{self.scenario.id}-{self.side.name}-{i}.txt"
            proc = profile.start(pid, out, seconds, self.profile_core)
            if proc is not None:
                self.profilers.append((out, proc))

    def profiles(self) -> list[str]:
        """Wait for the profilers (bounded) and summarize what they recorded."""
        summaries = []
        for out, proc in self.profilers:
            try:
                proc.wait(servers.STOP_TIMEOUT + self.scenario.spec.get("duration", 5))
            except subprocess.TimeoutExpired:
                proc.kill()
            if out.exists():
                summaries.append(profile.summarize(out))
        return summaries

    def _kib_per_socket(self, sockets: int) -> float | None:
        time.sleep(SETTLE)
        grown = rss_bytes(self.side.rss_pids()) - self.rss0
        return round(grown / 1024 / sockets, 1) if sockets else None

    def derive(self) -> dict[str, Any]:
        f = self.figures
        if "gen_cpu" in f:
            f["gen_cpu_pct"] = round(100 * f["gen_cpu"], 1)
        cpu = f.get("server_cpu_s") or 0
        if cpu:
            f["deliveries_per_cpu_s"] = round(f.get("deliveries", 0) / cpu)
            f["messages_per_cpu_s"] = round(f.get("persisted", 0) / cpu)
        if f.get("webhooks") and "pg_outbox_index_reads" in f:
            f["pg_outbox_reads_per_webhook"] = round(f["pg_outbox_index_reads"] / f["webhooks"], 1)
        return f


def run_generator(spec: dict[str, Any], core: str | None, measurement: Measurement,
                  budget: float) -> None:
    module = measurement.scenario.generator
    argv = servers.pinned(core, [sys.executable, "-m", module, orjson.dumps(spec).decode()])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            preexec_fn=servers._raise_nofile)
    watchdog = threading.Timer(budget, proc.kill)
    watchdog.start()

    def reply(word: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(word.encode() + b"\n")
        proc.stdin.flush()

    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            measurement.on_event(orjson.loads(line), reply)
        proc.wait(servers.STOP_TIMEOUT)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    if proc.returncode:
        measurement.figures["error"] = f"load generator exited with {proc.returncode}"


def _budget(scenario: Scenario) -> float:
    spec = scenario.spec
    steps = len(spec.get("steps", ())) + 1
    return steps * 150 + spec.get("duration", 0) + 2 * spec.get("drain", 0) + GEN_MARGIN


def run_one(scenario: Scenario, name: str, shared: servers.Shared,
            args: argparse.Namespace) -> dict[str, Any]:
    if name == "ours":
        env = {**scenario.ours_env, **dict(kv.split("=", 1) for kv in args.ours_env)}
        redis = scenario.instances > 1 or not args.no_redis
        side = servers.start_ours(shared, scenario.instances, env, redis=redis,
                                  cluster=scenario.cluster, workers=scenario.workers)
    else:
        side = servers.STARTERS[name](shared, scenario.instances)
    try:
        hook_port = servers.free_port() if scenario.webhooks else 0
        hook_url = f"http://{servers.HOST}:{hook_port}/hook" if hook_port else None
        if scenario.team_endpoints:
            servers.create_team_endpoints(side, scenario.team_endpoints, hook_url)
        callback = hook_url if scenario.callbacks else None
        rooms = servers.create_conversations(side, scenario.rooms, callback)
        spec = {"client": args.client, "uvloop": not args.no_gen_uvloop, **scenario.spec,
                "targets": side.targets, "rooms": rooms, "protocol": side.protocol,
                "token": side.token, "webhook_port": hook_port,
                "webhooks_per_message": int(scenario.callbacks) + scenario.team_endpoints}
        if scenario.tenants:
            spec["tenants"] = servers.create_tenants(shared, side, scenario.tenants)
        profile_dir = Path(args.profile) if args.profile else None
        probe = FsyncProbe(shared.need_postgres().data_dir) \
            if scenario.fsync_probe and name == "ours" else None
        measurement = Measurement(side, scenario, profile_dir, args.gen_core, probe)
        time.sleep(SETTLE)
        measurement.rss0 = rss_bytes(side.rss_pids())
        run_generator(spec, args.gen_core, measurement, _budget(scenario))
        for summary in measurement.profiles():
            print(summary, flush=True)
        if scenario.check_order and name == "ours":
            measurement.figures.update(order.check(side, rooms))
        return measurement.derive()
    finally:
        side.close()


def _cell(value: Any, figures: dict[str, Any], key: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.1f}" if isinstance(value, float) else (
        f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    if key == "deliveries_per_s" and figures.get("gen_saturated"):
        text += " (gen sat.)"
    return text


def _ratio(ours: Any, peer: Any) -> str:
    if not isinstance(ours, int | float) or not isinstance(peer, int | float) or not peer:
        return "-"
    return f"{ours / peer:.2f}x"


def table(results: dict[str, dict[str, dict[str, Any]]], chosen: list[Scenario],
          names: list[str]) -> str:
    peers = [n for n in names if n != "ours"]
    head = ["scenario", "figure", *names, *(f"ours/{p}" for p in peers if "ours" in names)]
    rows = [head, ["---"] * len(head)]
    for sc in chosen:
        for label, key, better in sc.metrics:
            cells = [sc.id, f"{label} {better}"]
            for name in names:
                figures = results.get(sc.id, {}).get(name)
                if figures is None:
                    cells.append("n/a")
                elif "error" in figures and key not in figures:
                    cells.append("error")
                else:
                    cell = _cell(figures.get(key), figures, key)
                    note = sc.notes.get(name)
                    cells.append(f"{cell} ({note})" if note and key.startswith("messages")
                                 else cell)
            if "ours" in names:
                ours = results.get(sc.id, {}).get("ours", {}).get(key)
                for peer in peers:
                    cells.append(_ratio(ours, results.get(sc.id, {}).get(peer, {}).get(key)))
            rows.append(cells)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except OSError:
        mem = 0
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, "
            f"{model}, {mem} MiB RAM; Python {platform.python_version()}; "
            f"load average {os.getloadavg()[0]:.2f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, a few seconds each")
    parser.add_argument("--scenarios", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated among ours,bare,socketio")
    parser.add_argument("--client", default="picows", choices=("picows", "aiohttp", "websockets"))
    parser.add_argument("--server-core", default="0", help="taskset cores of the server side")
    parser.add_argument("--gen-core", default="1", help="taskset cores of the load generator")
    parser.add_argument("--no-peer-uvloop", action="store_true", help="peers on plain asyncio")
    parser.add_argument("--no-gen-uvloop", action="store_true", help="generator on asyncio")
    parser.add_argument("--ours-env", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for our server, e.g. CHATSERVER_REALTIME_COMPRESS=true")
    parser.add_argument("--ours-src", metavar="DIR",
                        help="run our server from this checkout (e.g. an exported branch)")
    parser.add_argument("--no-redis", action="store_true",
                        help="our single-instance scenarios on the in-process bus")
    parser.add_argument("--profile", metavar="DIR",
                        help="record the server processes with py-spy into DIR and summarize")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each scenario this many times (rows <id>#1, <id>#2, ...)")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    every = scenarios(QUICK if args.quick else FULL)
    if args.list:
        for sc in every:
            print(f"{sc.id:>3}  {sc.title}")
        return
    wanted = [s for s in args.scenarios.split(",") if s]
    chosen = [sc for sc in every if not wanted or sc.id in wanted]
    if args.repeat > 1:
        chosen = [dataclasses.replace(sc, id=f"{sc.id}#{k}") for sc in chosen
                  for k in range(1, args.repeat + 1)]
    names = [n for n in args.servers.split(",") if n]
    shared = servers.Shared.create(args.server_core, not args.no_peer_uvloop, args.ours_src)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    print(f"# {machine()}", flush=True)
    try:
        for sc in chosen:
            for name in names:
                if name not in sc.servers:
                    continue
                print(f"scenario {sc.id} ({sc.title}) on {name} ...", flush=True)
                try:
                    figures = run_one(sc, name, shared, args)
                except Exception as exc:  # noqa: BLE001 - one failure must not lose the table
                    figures = {"error": repr(exc)}
                print(f"  {orjson.dumps(figures).decode()}", flush=True)
                results.setdefault(sc.id, {})[name] = figures
    finally:
        shared.close()
    print()
    print(table(results, chosen, names))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps({"machine": machine(), "results": results},
                                                 option=orjson.OPT_INDENT_2))
    inverted = {sc: f["inversions"] for sc, per in results.items() for f in per.values()
                if f.get("inversions")}
    if inverted:
        sys.exit(f"per-sender order broken (messages stored after one sent later): {inverted}")
