"""A throwaway local Redis Cluster for tests and benchmarks: N masters (and replicas) on free loopback ports.

``start(masters=3, replicas=1)`` starts ``redis-server --cluster-enabled yes`` processes (no persistence,
cluster config files in a temporary directory), joins them with ``redis-cli --cluster create`` and waits
until every node reports ``cluster_state:ok``; ``Cluster.stop()`` stops each by PID and removes the
directory. ``cluster-node-timeout`` is low (1 s by default) so a killed master's replica takes over
within a few seconds in fault tests.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from scripts.processes import LOOPBACK, free_port, stop, wait_port


class RedisClusterUnavailable(RuntimeError):
    """redis-server or redis-cli is missing, or the cluster did not form."""


@dataclass
class Node:
    port: int
    process: subprocess.Popen
    log_path: Path
    argv: list[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL (a crashed master, for fault tests)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class Cluster:
    nodes: list[Node]
    directory: Path
    node_timeout_ms: int
    masters: int = 3
    _cli: str = field(default="redis-cli", repr=False)

    @property
    def url(self) -> str:
        """A URL naming one node (any node will do: clients discover the rest with CLUSTER SLOTS)."""
        return f"redis://{LOOPBACK}:{self.nodes[0].port}/0"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def cli(self, port: int, *args: str, timeout: float = 10) -> str:
        """Run ``redis-cli -p <port> <args>`` and return its output."""
        done = subprocess.run([self._cli, "-h", LOOPBACK, "-p", str(port), *args],
                              capture_output=True, text=True, timeout=timeout, check=True)  # fmt: skip
        return done.stdout

    def node(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def roles(self) -> dict[int, str]:
        """``{port: "master" | "slave"}`` of the live nodes, as each reports itself."""
        roles = {}
        for node in self.nodes:
            if node.alive:
                try:
                    roles[node.port] = self.cli(node.port, "role").split("\n", 1)[0].strip()
                except (subprocess.SubprocessError, OSError):
                    continue
        return roles

    def master_of_slot(self, slot: int) -> int:
        """The port of the master that owns ``slot`` now, as the first live node that answers sees it."""
        import redis

        for node in self.nodes:
            if not node.alive:
                continue
            try:
                with redis.Redis(host=LOOPBACK, port=node.port, socket_timeout=2) as client:
                    ranges = client.execute_command("CLUSTER", "SLOTS")
            except (redis.RedisError, OSError):
                continue
            for entry in ranges:
                if int(entry[0]) <= slot <= int(entry[1]):
                    return int(entry[2][1])
        raise RedisClusterUnavailable(f"no live node knows the master of slot {slot}")

    def spread(self, names: Iterable[str], channel: Callable[[str], str], count: int) -> list[str]:
        """The first ``count`` of ``names`` whose ``channel(name)`` hash to slots of ``count`` different masters
        (rooms on different shards, for tests)."""
        from redis.crc import key_slot

        found: dict[int, str] = {}
        for name in names:
            found.setdefault(self.master_of_slot(key_slot(channel(name).encode())), name)
            if len(found) == count:
                return list(found.values())
        raise RedisClusterUnavailable(f"no {count} names on {count} different masters")

    def wait_ok(self, *, timeout: float = 30.0) -> None:
        """Wait until every live node reports ``cluster_state:ok`` and sees every slot served by a live master."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                states = [self.cli(node.port, "cluster", "info") for node in self.nodes if node.alive]
                if states and all("cluster_state:ok" in state for state in states):
                    return
                last = states[0] if states else ""
            except (subprocess.SubprocessError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise RedisClusterUnavailable(f"the cluster did not reach state ok within {timeout:g}s: {last[:300]}")

    def restart(self, node: Node) -> None:
        """Start a killed node again with its cluster config: it rejoins (as a replica of whoever took over)."""
        node.process = subprocess.Popen(node.argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(node.port, node.process, what=f"redis-server (cluster) on {node.port}", timeout=15)

    def stop(self) -> None:
        for node in self.nodes:
            stop(node.process, timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start(*, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000, log_dir: Path | None = None) -> Cluster:
    """Start and join a cluster of ``masters`` masters with ``replicas`` replicas each; raises
    RedisClusterUnavailable when the binaries are missing or it does not form."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise RedisClusterUnavailable("redis-server and redis-cli are needed (Debian package redis-server)")
    directory = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
    log_dir = log_dir or directory
    log_dir.mkdir(parents=True, exist_ok=True)
    nodes: list[Node] = []
    cluster = Cluster(nodes, directory, node_timeout_ms, masters, cli)
    try:
        for _ in range(masters * (1 + replicas)):
            port = free_port()
            log_path = log_dir / f"redis-cluster-{port}.log"
            argv = [server, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                    "--cluster-enabled", "yes", "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
                    "--cluster-node-timeout", str(node_timeout_ms),
                    # The bus port is port + 10000 by default, which may be taken (or past 65535).
                    "--cluster-port", str(free_port()), "--dir", str(directory),
                    "--logfile", str(log_path)]  # fmt: skip
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            nodes.append(Node(port, process, log_path, argv))
        for node in nodes:
            wait_port(node.port, node.process, what=f"redis-server (cluster) on {node.port}", timeout=15)
        subprocess.run([cli, "--cluster", "create", *(f"{LOOPBACK}:{node.port}" for node in nodes),
                        "--cluster-replicas", str(replicas), "--cluster-yes"],
                       capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        cluster.wait_ok(timeout=30)
        if replicas:
            _wait_replicas(cluster, masters * replicas, timeout=30)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_replicas(cluster: Cluster, expected: int, *, timeout: float) -> None:
    """Replicas attach to their masters a moment after ``--cluster create``; fault tests need them synced."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        synced = 0
        for port, role in cluster.roles().items():
            if role == "slave":
                info = cluster.cli(port, "info", "replication")
                synced += "master_link_status:up" in info
        if synced >= expected:
            return
        time.sleep(0.1)
    raise RedisClusterUnavailable(f"replicas did not sync within {timeout:g}s")
