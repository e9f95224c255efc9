"""Issue 23's cluster benchmark: the cost of crossing processes, on one Redis and on a Redis Cluster.

The same two loads on four set-ups started side by side in one run (each on fresh processes):

- ``single``: one worker, no Redis (the bus in memory): the cost of a delivery in one process;
- ``redis2``: two workers sharing one redis-server (classic PUBLISH/SUBSCRIBE);
- ``redis2_unix``: the same over a Unix socket (``REDIS_URL=unix://…``, Redis on the same machine);
- ``cluster2``: two workers on a local Redis Cluster of three masters and three replicas started here
  (``REDIS_CLUSTER=1``: SPUBLISH/SSUBSCRIBE on each channel's shard);
- ``cluster2_noreplica``: the same with three masters only, to show what the replicas cost.

Loads (bench/loadgen.mjs, connections spread round-robin over the workers, so half of every fan-out
and one member of every room is on the other worker): ``fanout`` — one publisher to 1,000 subscribers of
one topic; ``rooms`` — 250 two-user rooms (one topic each, so on a cluster the rooms spread over the
shards), everyone publishing into their room; ``chat`` — the real chat as the page sends it, as
``bench/run.py --scenarios chat`` runs it (bench/chat.py: 20 rooms of 5, one user per connection, JSON SENDs
with a ``client_id`` and a RECEIPT each to ``/app/rooms.<slug>``, every message stored, then the stored rows
checked against what was sent and RECEIPTed), on a throwaway PostgreSQL started here (or SQLite,
``--chat-database``). Each as fast as possible and paced (``_paced``: the same message rate on every set-up,
50 msg/s fan-out, 2,000 msg/s in the rooms, 500 msg/s in the chat). The figure is deliveries per server
CPU-second, where the server is every worker **and every Redis node** of the set-up, and for the chat on
PostgreSQL **every PostgreSQL process** too (CPU from /proc over the measured step; on SQLite the database
works inside the workers). The target: a cross-process delivery costs at most 1.5x a single process's one.

    python -m bench.cluster               # about 10 minutes; writes bench/results/cluster.{json,md}
    python -m bench.cluster --quick       # a smoke test
    python -m bench.cluster --loads rooms,rooms_paced --setups single,redis2   # a part of it
    python -m bench.cluster --loads chat,chat_paced --chat-database sqlite       # the chat on SQLite
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import chat  # noqa: E402
from bench import run as bench_run  # noqa: E402
from bench.run import Scenario, Server  # noqa: E402
from scripts import postgres, redis_cluster  # noqa: E402
from scripts.processes import cpu_seconds  # noqa: E402

logger = logging.getLogger("bench")
TARGET_RATIO = 1.5
SETUPS = ("single", "redis2", "redis2_unix", "cluster2", "cluster2_noreplica")
SETUP_LABELS = {
    "single": "1 worker, no Redis",
    "redis2": "2 workers, 1 redis-server",
    "redis2_unix": "2 workers, 1 redis-server, Unix socket",
    "cluster2": "2 workers, cluster 3 masters + 3 replicas",
    "cluster2_noreplica": "2 workers, cluster 3 masters",
}
CHAT_PACED_RATE = 500  # messages/s over all rooms: 2,500 deliveries/s, well under one worker's chat maximum
CHAT_LOADS = ("chat", "chat_paced")


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
        *chat_loads(quick),
    ]


def chat_loads(quick: bool) -> list[Scenario]:
    """bench/chat.py's chat load, the frontend's messages (its loadgen arguments as ``bench/run.py`` passes
    them): max, and one fixed rate instead of its sweep so that every set-up carries the same throughput."""
    cfg = chat.config(quick)
    rate = 20 if quick else CHAT_PACED_RATE
    paced = dataclasses.replace(cfg, rates=str(rate), sweep_seconds=cfg.max_seconds)
    rooms = f"{cfg.rooms} rooms of {cfg.room_size}"
    return [
        Scenario("chat", f"chat, {rooms}, max", chat.loadgen_args(cfg, "max"), kind="chat",
                 connections=cfg.connections),
        Scenario("chat_paced", f"chat, {rooms}, {rate} msg/s", chat.loadgen_args(paced, "paced"), kind="chat",
                 connections=cfg.connections),
    ]  # fmt: skip


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its children, live and exited (the postmaster reaps its backends, so their
    time lands in its cutime/cstime)."""
    total = cpu_seconds(pid, reaped_children=True)
    for child in postgres.children(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(child)
    return total


def warm_up(urls: list[str]) -> None:
    """One /readyz/ per worker: it runs ``SELECT 1``, so each worker's database pool opens its connections
    (and the PostgreSQL backends whose CPU the load generator samples exist) before the load starts."""
    for url in urls:
        http = url.replace("ws://", "http://").split("/ws/")[0] + "/readyz/"
        with contextlib.suppress(OSError), urllib.request.urlopen(http, timeout=10) as answer:
            answer.read()


def wait_socket(path: Path, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not open {path}")
        time.sleep(0.05)


@contextlib.contextmanager
def setup(name: str, kind: str, database: str, log: Path, pg: postgres.Cluster | None = None) -> Iterator[Server]:
    """Start the workers (and Redis) of one set-up; everything is stopped by PID on the way out. ``pg``: the
    database is that PostgreSQL, whose processes count as the server's too (``Server.cpu_pids``)."""
    server = Server(name, "")
    cluster = None
    # Each worker's pool opens all its connections at once, so that the backends exist when the load
    # generator lists the processes it samples (the default grows the pool under load, from 2 to 10).
    extra = {"DB_POOL_MIN_SIZE": "10", "DB_POOL_MAX_SIZE": "10"} if pg is not None else {}
    try:
        env = bench_run.project_env(database, **extra)
        workers = 1
        if name == "redis2":
            redis, port = bench_run.start_redis()
            server.processes.append(redis)
            server.cpu_pids.append(redis.pid)
            env = bench_run.project_env(database, REDIS_URL=f"redis://127.0.0.1:{port}/0", **extra)
            workers = 2
        elif name == "redis2_unix":
            socket_path = log.parent / "redis.sock"
            socket_path.unlink(missing_ok=True)
            redis = subprocess.Popen(
                ["redis-server", "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
                 "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
            server.processes.append(redis)
            server.cpu_pids.append(redis.pid)
            wait_socket(socket_path, redis)
            env = bench_run.project_env(database, REDIS_URL=f"unix://{socket_path}", **extra)
            workers = 2
        elif name.startswith("cluster2"):
            cluster = redis_cluster.start(
                masters=3, replicas=0 if name.endswith("noreplica") else 1, node_timeout_ms=5000, log_dir=log.parent
            )
            server.cpu_pids += [node.pid for node in cluster.nodes]
            env = bench_run.project_env(database, REDIS_URL=cluster.url, REDIS_CLUSTER="1", **extra)
            workers = 2
        urls = []
        for _ in range(workers):
            process, port = bench_run.start_python_server(kind, env, log, root=ROOT)
            server.processes.append(process)
            server.cpu_pids.append(process.pid)
            urls.append(f"ws://127.0.0.1:{port}/ws/websocket")
        server.url = ",".join(urls)
        if pg is not None:
            warm_up(urls)
            time.sleep(1)  # the pools open their connections in the background
            server.cpu_pids += [pg.pid, *sorted(postgres.children(pg.pid))]
        yield server
    finally:
        server.stop()
        if cluster is not None:
            cluster.stop()


def write_table(report: dict, path: Path) -> str:
    chat_db = report.get("chat_database")
    lines = [
        f"# Cross-process cost: one Redis and a Redis Cluster ({report['started']}, {report['server']})",
        "",
        f"Load average before/after: {report['load_average_before']} / {report['load_average_after']} "
        f"on {report['cpus']} cores. Deliveries per server CPU-second count every worker and every Redis node"
        + (f"; the chat's also every process of its database, {chat_db}" if chat_db else "")
        + ". `stored`: the chat's stored rows checked against what was sent and RECEIPTed (none missing, "
        "duplicated or reordered).",
        "",
        "| load | set-up | deliveries/s | deliveries per server CPU-s | cost vs 1 worker | p99 ms | lost "
        "| stored | CPU s workers / Redis / database (whole load) |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for load, by_setup in report["results"].items():
        single = (by_setup.get("single") or {}).get("per_server_cpu_s")
        for name, figures in by_setup.items():
            if "error" in figures:
                lines.append(f"| {load} | {SETUP_LABELS[name]} | error: {figures['error']} | | | | | | |")
                continue
            per_cpu = figures.get("per_server_cpu_s")
            ratio = f"{single / per_cpu:.2f}x" if single and per_cpu else "-"
            stored = {True: "ok", False: "NOT ok", None: ""}[figures.get("stored_ok")]
            lines.append(
                f"| {load} | {SETUP_LABELS[name]} | {figures.get('deliveries_per_s')} | {per_cpu} | {ratio} "
                f"| {figures.get('p99_ms')} | {figures.get('lost')} | {stored} "
                f"| {figures.get('cpu_workers_s')} / {figures.get('cpu_redis_s')} / {figures.get('cpu_db_s', '-')} |"
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
    parser.add_argument(
        "--chat-database",
        choices=chat.DATABASES,
        default="postgres",
        help="the chat loads' database (postgres: a throwaway cluster started here, fsync on)",
    )
    parser.add_argument("--root", default=str(REPO), help="the tree the workers run from (another revision's)")
    parser.add_argument("--profile", default="", help="a folder: py-spy samples the last worker during each load")
    parser.add_argument("--out", default=str(bench_run.RESULTS))
    parser.add_argument("--name", default="cluster", help="result files: <out>/<name>.{json,md}")
    parser.add_argument("--work", default=str(REPO / "var" / "bench-cluster"))
    args = parser.parse_args(argv)
    global PROFILE, ROOT
    ROOT = Path(args.root).resolve()
    if args.profile:
        PROFILE = Path(args.profile)
        PROFILE.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="[bench %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 20000), hard), hard))
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in loads(args.quick) if not args.loads or s.name in args.loads.split(",")]
    pubsub = [s for s in chosen if s.kind != "chat"]
    database = bench_run.sqlite_url(work / "bench.sqlite3")
    tokens = work / "tokens.txt"
    if pubsub:
        bench_run.prepare_database(database, max(s.connections for s in pubsub) + 1, 0, 0, tokens)
    report: dict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "server": args.server,
        "workers_tree": str(ROOT),
        "cpus": os.cpu_count(),
        "load_average_before": bench_run.load_average(),
        "results": {},
        "raw": {},
    }
    timeout = 120 if args.quick else 240
    with contextlib.ExitStack() as stack:
        store, pg = None, None
        if len(pubsub) < len(chosen):
            store, pg = chat_database(args.chat_database, work, stack)
            cfg = chat.config(args.quick)
            chat_tokens = work / "tokens-chat.txt"
            bench_run.prepare_database(store.url, cfg.connections, cfg.rooms, cfg.room_size, chat_tokens)
            report["chat_database"] = f"PostgreSQL {pg.version} (fsync on)" if pg else "SQLite (WAL)"
        for scenario in chosen:
            for name in [s for s in args.setups.split(",") if s]:
                if scenario.kind == "chat":
                    assert store is not None
                    summary, raw = one_chat_load(scenario, name, args.server, store, pg, chat_tokens, work, timeout)
                else:
                    summary, raw = one_load(scenario, name, args.server, database, tokens, work, timeout)
                report["raw"].setdefault(scenario.name, {})[name] = raw
                report["results"].setdefault(scenario.name, {})[name] = summary
                logger.info("%s on %s: %s", scenario.name, name, json.dumps(summary))
    report["load_average_after"] = bench_run.load_average()
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=1, default=str))
    print(write_table(report, out / f"{args.name}.md"))
    return 0


def chat_database(kind: str, work: Path, stack: contextlib.ExitStack) -> tuple[chat.Database, postgres.Cluster | None]:
    """The chat loads' database: a fresh SQLite file, or a throwaway PostgreSQL (stopped by PID at the end)."""
    if kind == "sqlite":
        path = work / "chat.sqlite3"
        return chat.Database(kind, bench_run.sqlite_url(path), path), None
    pg = postgres.start(work / "pg", settings={"fsync": "on"})
    stack.callback(pg.stop)
    logger.info("PostgreSQL %s on 127.0.0.1:%s (pid %s)", pg.version, pg.port, pg.pid)
    return chat.Database(kind, pg.url, admin=lambda sql: pg.psql(sql, database=pg.database)), pg


PROFILE: Path | None = None  # --profile
ROOT = REPO  # --root: the workers' tree


def measure(scenario: Scenario, server: Server, tokens: Path, label: str, timeout: float) -> tuple[dict, dict]:
    """Run the load generator; returns its raw result and the CPU seconds each of the server's processes used
    over the whole load (connecting, warm-up and drain included)."""
    before = {pid: cpu_seconds(pid) for pid in server.cpu_pids}
    profiler = None
    if PROFILE is not None:  # the last worker, from past the connecting and the warm-up, for 5 s
        worker = server.processes[-1].pid
        path = PROFILE / f"{label.replace('/', '-')}.txt"
        spy = shutil.which("py-spy") or "py-spy"
        argv = ["sh", "-c", 'sleep 6 && exec "$@"', "6", spy, "record", "--format", "raw", "--rate", "250",
                "--nonblocking", "--duration", "5", "-o", str(path), "-p", str(worker)]  # fmt: skip
        profiler = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    raw = bench_run.run_loadgen(scenario, server, tokens, label, timeout)
    if profiler is not None:
        try:
            profiler.wait(timeout=30)
        except subprocess.TimeoutExpired:
            bench_run.stop(profiler)
    used = {}
    for pid in server.cpu_pids:
        with contextlib.suppress(OSError):
            used[pid] = cpu_seconds(pid) - before[pid]
    return raw, used


def split_cpu(summary: dict, server: Server, used: dict[int, float], database_pids: set[int]) -> None:
    """Where the CPU went over the whole load: the workers are the Python processes, then the database's
    processes, the rest are Redis nodes."""
    workers = {process.pid for process in server.processes if "python" in str(process.args[0])}
    summary["cpu_workers_s"] = round(sum(s for pid, s in used.items() if pid in workers), 2)
    summary["cpu_redis_s"] = round(sum(s for pid, s in used.items() if pid not in workers | database_pids), 2)


def one_load(
    scenario: Scenario, name: str, kind: str, database: str, tokens: Path, work: Path, timeout: float
) -> tuple[dict, dict]:
    with setup(name, kind, database, work / f"{name}.log") as server:
        logger.info("%s on %s (%s)", scenario.name, name, server.url)
        raw, used = measure(scenario, server, tokens, f"cluster/{name}/{scenario.name}", timeout)
    summary = bench_run.summarise(scenario, raw)
    split_cpu(summary, server, used, set())
    return summary, raw


def one_chat_load(
    scenario: Scenario,
    name: str,
    kind: str,
    store: chat.Database,
    pg: postgres.Cluster | None,
    tokens: Path,
    work: Path,
    timeout: float,
) -> tuple[dict, dict]:
    """One chat load on a fresh set-up; the stored rows are then checked as bench/chat.py does."""
    store.settle()
    since = store.last_id()
    with setup(name, kind, store.url, work / f"{name}.log", pg) as server:
        logger.info("%s on %s (%s)", scenario.name, name, server.url)
        db_before = process_tree_cpu(pg.pid) if pg else 0.0
        raw, used = measure(scenario, server, tokens, f"cluster/{name}/{scenario.name}", timeout)
        db_used = process_tree_cpu(pg.pid) - db_before if pg else 0.0
        db_pids = {pg.pid, *postgres.children(pg.pid)} if pg else set()  # before the workers' backends go
        store.wait_quiet()
    summary = bench_run.summarise(scenario, raw)
    split_cpu(summary, server, used, db_pids)
    summary["cpu_db_s"] = round(db_used, 2)  # every backend, those that came and went included
    if raw.get("steps"):
        summary["missing_receipts"] = raw["steps"][-1].get("missing_receipts")
    check = chat.verify(store, since, raw, kind="max")  # a fixed rate too: every step's rows must be exact
    summary["stored_ok"] = check["ok"]
    summary["stored"] = {k: check[k] for k in ("stored", "sent", "receipts", "duplicates", "reordered")}
    return summary, raw


if __name__ == "__main__":
    raise SystemExit(main())
