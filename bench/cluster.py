"""Issue 23's cluster benchmark: the cost of crossing processes, on one Redis and on a Redis Cluster.

The same two loads on four set-ups started side by side in one run (each on fresh processes):

- ``single``: one worker, no Redis (the bus in memory): the cost of a delivery in one process;
- ``redis2``: two workers sharing one redis-server (classic PUBLISH/SUBSCRIBE);
- ``cluster2``: two workers on a local Redis Cluster of three masters and three replicas started here
  (``REDIS_CLUSTER=1``: SPUBLISH/SSUBSCRIBE on each channel's shard);
- ``cluster2_noreplica``: the same with three masters only, to show what the replicas cost.

Loads (bench/loadgen.mjs, connections spread round-robin over the workers, so half of every fan-out
and one member of every room is on the other worker): ``fanout`` — one publisher to 1,000 subscribers of
one topic; ``rooms`` — 250 two-user rooms (one topic each, so on a cluster the rooms spread over the
shards), everyone publishing into their room; each as fast as possible and paced (``_paced``: the same
message rate on every set-up, 50 msg/s fan-out, 2,000 msg/s in the rooms). The figure is deliveries per server
CPU-second, where the server is every worker **and every Redis node** of the set-up (CPU from /proc
over the measured step). The target: a cross-process delivery costs at most 1.5x a single process's one.

    python -m bench.cluster               # about 10 minutes; writes bench/results/cluster.{json,md}
    python -m bench.cluster --quick       # a smoke test
    python -m bench.cluster --loads rooms,rooms_paced --setups single,redis2   # a part of it
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import run as bench_run  # noqa: E402
from bench.run import Scenario, Server  # noqa: E402
from scripts import redis_cluster  # noqa: E402
from scripts.processes import cpu_seconds  # noqa: E402

logger = logging.getLogger("bench")
TARGET_RATIO = 1.5
SETUPS = ("single", "redis2", "cluster2", "cluster2_noreplica")
SETUP_LABELS = {
    "single": "1 worker, no Redis",
    "redis2": "2 workers, 1 redis-server",
    "cluster2": "2 workers, cluster 3 masters + 3 replicas",
    "cluster2_noreplica": "2 workers, cluster 3 masters",
}


def loads(quick: bool) -> list[Scenario]:
    step = (
        ("--duration", "2", "--warmup", "1", "--drain", "3", "--pause", "0.5")
        if quick
        else ("--duration", "5", "--warmup", "2", "--drain", "5", "--pause", "1")
    )
    subs, rooms = ("100", "50") if quick else ("1000", "250")
    room_args = ("--mode", "rooms", "--rooms", rooms, "--room-size", "2", "--sub-dest", "/topic/benchroom.{room}")
    # Max-rate loads are limited by the load generator on this small machine, at different rates per set-up;
    # the paced ones compare the set-ups at one and the same throughput.
    return [
        Scenario("fanout", f"fan-out 1→{subs}, max", ("--subs", subs, "--pubs", "1", *step), connections=int(subs) + 1),
        Scenario(
            "fanout_paced",
            f"fan-out 1→{subs}, 50 msg/s",
            ("--subs", subs, "--pubs", "1", "--rate", "50", *step),
            connections=int(subs) + 1,
        ),
        Scenario(
            "rooms", f"{rooms} two-user rooms, max", (*room_args, "--window", "2", *step), connections=2 * int(rooms)
        ),
        Scenario(
            "rooms_paced",
            f"{rooms} two-user rooms, 2,000 msg/s",
            (*room_args, "--rate", "2000", *step),
            connections=2 * int(rooms),
        ),
    ]


@contextlib.contextmanager
def setup(name: str, kind: str, database: str, log: Path) -> Iterator[Server]:
    """Start the workers (and Redis) of one set-up; everything is stopped by PID on the way out."""
    server = Server(name, "")
    cluster = None
    try:
        env = bench_run.project_env(database)
        workers = 1
        if name == "redis2":
            redis, port = bench_run.start_redis()
            server.processes.append(redis)
            server.cpu_pids.append(redis.pid)
            env = bench_run.project_env(database, REDIS_URL=f"redis://127.0.0.1:{port}/0")
            workers = 2
        elif name.startswith("cluster2"):
            cluster = redis_cluster.start(
                masters=3, replicas=0 if name.endswith("noreplica") else 1, node_timeout_ms=5000, log_dir=log.parent
            )
            server.cpu_pids += [node.pid for node in cluster.nodes]
            env = bench_run.project_env(database, REDIS_URL=cluster.url, REDIS_CLUSTER="1")
            workers = 2
        urls = []
        for _ in range(workers):
            process, port = bench_run.start_python_server(kind, env, log)
            server.processes.append(process)
            server.cpu_pids.append(process.pid)
            urls.append(f"ws://127.0.0.1:{port}/ws/websocket")
        server.url = ",".join(urls)
        yield server
    finally:
        server.stop()
        if cluster is not None:
            cluster.stop()


def write_table(report: dict, path: Path) -> str:
    lines = [
        f"# Cross-process cost: one Redis and a Redis Cluster ({report['started']}, {report['server']})",
        "",
        f"Load average before/after: {report['load_average_before']} / {report['load_average_after']} "
        f"on {report['cpus']} cores. Deliveries per server CPU-second count every worker and every Redis node.",
        "",
        "| load | set-up | deliveries/s | deliveries per server CPU-s | cost vs 1 worker | p99 ms | lost "
        "| CPU s workers / Redis (whole load) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for load, by_setup in report["results"].items():
        single = (by_setup.get("single") or {}).get("per_server_cpu_s")
        for name, figures in by_setup.items():
            if "error" in figures:
                lines.append(f"| {load} | {SETUP_LABELS[name]} | error: {figures['error']} | | | | | |")
                continue
            per_cpu = figures.get("per_server_cpu_s")
            ratio = f"{single / per_cpu:.2f}x" if single and per_cpu else "-"
            lines.append(
                f"| {load} | {SETUP_LABELS[name]} | {figures.get('deliveries_per_s')} | {per_cpu} | {ratio} "
                f"| {figures.get('p99_ms')} | {figures.get('lost')} "
                f"| {figures.get('cpu_workers_s')} / {figures.get('cpu_redis_s')} |"
            )
    lines += ["", f"Target: cross-process cost per delivery ≤ {TARGET_RATIO}x a single process's."]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--loads", default="", help="comma-separated load names (default: all)")
    parser.add_argument("--out", default=str(bench_run.RESULTS))
    parser.add_argument("--work", default=str(REPO / "var" / "bench-cluster"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[bench %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 20000), hard), hard))
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in loads(args.quick) if not args.loads or s.name in args.loads.split(",")]
    database = bench_run.sqlite_url(work / "bench.sqlite3")
    tokens = work / "tokens.txt"
    bench_run.prepare_database(database, max(s.connections for s in chosen) + 1, 0, 0, tokens)
    report: dict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "server": args.server,
        "cpus": os.cpu_count(),
        "load_average_before": bench_run.load_average(),
        "results": {},
        "raw": {},
    }
    timeout = 120 if args.quick else 240
    for scenario in chosen:
        for name in [s for s in args.setups.split(",") if s]:
            with setup(name, args.server, database, work / f"{name}.log") as server:
                logger.info("%s on %s (%s)", scenario.name, name, server.url)
                before = {pid: cpu_seconds(pid) for pid in server.cpu_pids}
                raw = bench_run.run_loadgen(scenario, server, tokens, f"cluster/{name}/{scenario.name}", timeout)
                used = {pid: cpu_seconds(pid) - before[pid] for pid in server.cpu_pids}
            summary = bench_run.summarise(scenario, raw)
            # Where the CPU went over the whole load (connecting, warm-up and drain included): the workers
            # are the Python processes, the rest are Redis nodes.
            workers = {process.pid for process in server.processes if "python" in str(process.args[0])}
            summary["cpu_workers_s"] = round(sum(s for pid, s in used.items() if pid in workers), 2)
            summary["cpu_redis_s"] = round(sum(s for pid, s in used.items() if pid not in workers), 2)
            report["raw"].setdefault(scenario.name, {})[name] = raw
            report["results"].setdefault(scenario.name, {})[name] = summary
            logger.info("%s on %s: %s", scenario.name, name, json.dumps(summary))
    report["load_average_after"] = bench_run.load_average()
    (out / "cluster.json").write_text(json.dumps(report, indent=1, default=str))
    print(write_table(report, out / "cluster.md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
