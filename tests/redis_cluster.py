"""A real Redis Cluster for tests: 3 primaries and 3 replicas from Debian's `redis-server` 7.

Sharded pub/sub needs Redis >= 7, so this uses the `redis-server` and `redis-cli` on PATH
(tests/run.sh installs them with apt when missing) and fails, never skips, without them. Nodes live
in a temporary directory on free loopback ports; one can be killed with SIGKILL and started again
(it rejoins as a replica of whichever node was promoted in its place).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

NODES = 6
NODE_TIMEOUT_MS = 2000
READY_TIMEOUT = 30.0
BUS_PORT_OFFSET = 10000  # a node's cluster bus listens here above its port (so port <= 55535)


def cluster_port() -> int:
    """A free loopback port whose cluster bus port is free too."""
    while True:
        port = random.randint(20000, 45000)
        if all(_free(p) for p in (port, port + BUS_PORT_OFFSET)):
            return port


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} (Redis >= 7) is not on PATH: apt-get install -y redis-server")
    return path


class RedisCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="chatserver-redis-cluster-"))
        self.ports = [cluster_port() for _ in range(NODES)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """Any one node: the bus discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisCluster:
        try:
            for port in self.ports:
                self.start_node(port)
            nodes = [f"127.0.0.1:{port}" for port in self.ports]
            subprocess.run(
                [binary("redis-cli"), "--cluster", "create", *nodes, "--cluster-replicas", "1",
                 "--cluster-yes"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, port: int) -> None:
        self.processes[port] = subprocess.Popen(
            [binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "", "--appendonly", "no",
             "--repl-diskless-sync-delay", "0",
             "--dir", str(self.dir), "--logfile", f"redis-{port}.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._until(lambda: self._answers(port), f"node {port} did not start")

    def kill(self, port: int) -> None:
        """SIGKILL, as a crash would."""
        process = self.processes.pop(port)
        process.kill()
        process.wait()

    def primaries(self) -> list[int]:
        """Ports of the primaries that own slots, as a live node reports them."""
        for port in self.processes:
            try:
                with Redis(host="127.0.0.1", port=port, socket_timeout=2) as client:
                    return sorted(int(entry[2][1]) for entry in client.execute_command(
                        "CLUSTER SLOTS"))
            except (OSError, RedisError):
                continue
        raise RuntimeError("no cluster node answers")

    def wait_ready(self) -> None:
        """Until every running node says the cluster is ok and agrees on 3 distinct primaries."""
        self._until(self._healthy, "the cluster did not become ready")

    def restart(self, port: int) -> None:
        """Start a killed node again (it rejoins as a replica) and wait until all is well."""
        if port not in self.processes:
            self.start_node(port)
        self.wait_ready()

    def wait_promoted(self, killed: int) -> None:
        """Until a replica took over the slots of the killed primary `killed`."""
        self._until(lambda: self._healthy() and killed not in self.primaries(),
                    f"no replica took over from {killed}")

    def _healthy(self) -> bool:
        try:
            owners = set()
            for port in self.processes:
                with Redis(host="127.0.0.1", port=port, socket_timeout=2) as client:
                    if client.execute_command("CLUSTER INFO")["cluster_state"] != "ok":
                        return False
                    # A replica that has not synced yet cannot take over from its primary.
                    replication = client.info("replication")
                    if replication["role"] == "slave" and replication["master_link_status"] != "up":
                        return False
                    owners.add(tuple(sorted((e[0], int(e[2][1])) for e in client.execute_command(
                        "CLUSTER SLOTS"))))
            # Every node reports the same slot map, held by NODES // 2 distinct primaries.
            return len(owners) == 1 and len({port for _, port in owners.pop()}) == NODES // 2
        except (OSError, RedisError):
            return False

    def stop(self) -> None:
        for port in list(self.processes):
            self.kill(port)
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            with Redis(host="127.0.0.1", port=port, socket_timeout=1) as client:
                return bool(client.ping())
        except (OSError, RedisError):
            return False

    @staticmethod
    def _until(check: object, failure: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not check():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError(failure)
            time.sleep(0.05)
