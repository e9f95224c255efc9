"""Issue 23's figures: idle memory per connection beside a bare ``websockets`` server, and the reconnect storm.

``--scenarios idle_memory,storm`` of bench/run.py, or on its own:

    python -m bench.storm                       # both, daphne and uvicorn (results/storm.md, storm.json)
    python -m bench.storm --quick               # small counts (a smoke run)
    python -m bench.storm --only storm --servers daphne

- **idle memory**: a fresh server (the bare websockets echo server of bench/bare_ws.py, the project on daphne,
  on uvicorn), then 2,000, 10,000 and 18,000 connections from one generator process
  (scripts/stomp_storm.py: a raw asyncio protocol, sockets spread over eight 127.0.0.x source addresses),
  each with a JWT CONNECT and one subscription, heart-beats both ways every 10 s, held 12 s at each step;
  the server's RSS at each step (absolute kB per connection, and the slope between steps), the generator's
  RSS separately, then one publish that must reach every connection. The absolute figure is measured from the
  RSS after a warm-up of 100 connections (kept open, counted in every step) for every server alike, so the
  project's one-time costs of its first connections are not charged to the first step; the figure from zero
  (RSS before any connection) is reported beside it.
- **storm**: PostgreSQL (a throwaway cluster: its ``pg_stat_database`` transaction count, sampled every
  0.25 s, gives the database's peak statements/s), 10,000 users, each a member of 3 rooms of 200 messages;
  10,000 clients open within 2 s, each CONNECTs and SUBSCRIBEs to the 3 rooms with a ``since-id`` 0-4
  messages back; refused ``busy`` clients come back after ``retry-after`` plus jitter. Reported: time until
  every client had all 3 RECEIPTs (the replay comes before the RECEIPT), failures (not subscribed after
  30 s), busy refusals, replayed messages and any replay that was not exactly what followed the client's
  since-id, peak and mean database transactions/s. ``--workers N`` runs N processes of each server, client
  i connecting to worker i % N (``make bench``: 2); where each client's time went, phase by phase.

Bounded: every generator run has a deadline (30 s storm; per idle step the open time plus 60 s), every
server is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import run as runner  # noqa: E402
from scripts import postgres  # noqa: E402
from scripts.processes import cpu_seconds, free_port, rss_kb, stop, wait_port  # noqa: E402

logger = logging.getLogger("bench.storm")
ROOMS = ("storm-0", "storm-1", "storm-2")
# Idle memory: connections opened before the baseline RSS (kept open), so that one-time costs of the first
# connections (imports on first use, the database connection, thread pool, caches) are not charged to the
# 2,000 connections of the first step; every server, the bare one too, gets the same warm-up.
WARMUP = 100
ROOM_MESSAGES = 200

PREPARE = r"""
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework_simplejwt.tokens import AccessToken
from chat.models import Membership, Message, Room
users, rooms, per_room, tokens = int(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
call_command("migrate", interactive=False, verbosity=0)
User = get_user_model()
User.objects.bulk_create([User(username=f"storm{i}", password="!") for i in range(users)], batch_size=1000)
people = list(User.objects.filter(username__startswith="storm").order_by("id"))
open(tokens, "w").write("".join(f"{AccessToken.for_user(u)}\n" for u in people))
ids = {}
for slug in rooms:
    room = Room.objects.create(slug=slug, name=slug, creator=people[0], is_private=True)
    Membership.objects.bulk_create([Membership(room=room, user=u) for u in people], batch_size=2000)
    Message.objects.bulk_create([Message(room=room, author=people[0], body=f"m{n}") for n in range(per_room)])
    ids[slug] = list(Message.objects.filter(room=room).order_by("id").values_list("id", flat=True))
print(json.dumps(ids))
"""


def prepare(database_url: str, users: int, work: Path) -> tuple[Path, dict[str, list[int]]]:
    tokens = work / "storm-tokens.txt"
    done = subprocess.run(
        [sys.executable, "-c", PREPARE, str(users), ",".join(ROOMS), str(ROOM_MESSAGES), str(tokens)],
        cwd=REPO, env=runner.project_env(database_url), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"storm prepare failed: {done.stderr[-3000:]}")
    return tokens, json.loads(done.stdout.strip().splitlines()[-1])


def since_plan(clients: int, ids: dict[str, list[int]], path: Path, seed: int = 23) -> Path:
    """Each client's since-id per room (0 to 4 messages back) and how many messages follow it."""
    rng = random.Random(seed)
    plan = {}
    for client in range(clients):
        plan[str(client)] = {}
        for room, room_ids in ids.items():
            back = rng.randint(0, 4)
            plan[str(client)][room] = [room_ids[-1 - back], back]
    path.write_text(json.dumps(plan))
    return path


def generator(argv: list[str], timeout: float) -> dict:
    """Run scripts/stomp_storm.py in its own process (its memory is not the server's); its last line is JSON."""
    done = subprocess.run([sys.executable, "-m", "scripts.stomp_storm", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"the generator failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class TransactionRate(threading.Thread):
    """Samples PostgreSQL's committed + rolled back transactions every 0.25 s (each statement outside a
    transaction is one): the peak and mean per second while the storm runs."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True)
        import psycopg

        self.connection = psycopg.connect(conninfo, autocommit=True)
        self.samples: list[tuple[float, int]] = []
        self.halt = threading.Event()

    def count(self) -> int:
        row = self.connection.execute(
            "SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return int(row[0]) if row else 0

    def run(self) -> None:
        while not self.halt.is_set() and len(self.samples) < 2400:  # at most 10 minutes of samples
            self.samples.append((time.monotonic(), self.count()))
            self.halt.wait(0.25)

    def result(self) -> dict:
        self.halt.set()
        self.join(5)
        self.connection.close()
        # pg_stat counts reach the view at most every 0.5 s (stats_fetch_consistency, PGSTAT_MIN_INTERVAL):
        # rates over 1 s windows.
        rates = []
        for k, (t, n) in enumerate(self.samples):
            later = [(t2, n2) for t2, n2 in self.samples[k + 1 :] if t2 - t >= 1.0]
            if later:
                t2, n2 = later[0]
                rates.append((n2 - n) / (t2 - t))
        span = self.samples[-1][0] - self.samples[0][0] if len(self.samples) > 1 else 0
        total = self.samples[-1][1] - self.samples[0][1] if len(self.samples) > 1 else 0
        return {"peak_per_s": round(max(rates, default=0)), "mean_per_s": round(total / span) if span else 0,
                "total": total}  # fmt: skip


def storm(
    servers: list[str], clients: int, work: Path, workers: int = 1, env_extra: dict[str, str] | None = None
) -> dict:
    """The storm against each server: ``workers`` processes of it (clients spread over them, as a proxy
    spreads them over its upstreams), each with the default CONNECT admission unless ``env_extra`` sets it."""
    results: dict = {}
    with postgres.running(settings={"fsync": "off", "max_connections": "100"}) as cluster:
        database = cluster.url
        tokens, ids = prepare(database, clients, work)
        plan = since_plan(clients, ids, work / "storm-since.json")
        for name in servers:
            env = runner.project_env(database, DB_POOL_MAX_SIZE="10", **(env_extra or {}))
            started = [runner.start_python_server(name, env, work / f"storm-{name}-{n}.log") for n in range(workers)]
            try:
                urls = ",".join(f"ws://127.0.0.1:{port}/ws" for _, port in started)
                cpu_before = sum(cpu_seconds(process.pid) for process, _ in started)
                rate = TransactionRate(cluster.conninfo)
                rate.start()
                result = generator(["storm", "--url", urls, "--tokens", str(tokens),
                                    "--clients", str(clients), "--rooms", ",".join(ROOMS), "--since-file", str(plan),
                                    "--spread", "2", "--deadline", "30"], timeout=120)  # fmt: skip
                result["database_transactions"] = rate.result()
                result["workers"] = workers
                # Every worker's CPU over the run (the generator's own is result["client_cpu_s"]).
                result["server_cpu_s"] = round(sum(cpu_seconds(p.pid) for p, _ in started) - cpu_before, 2)
                result["server_rss_kb"] = [rss_kb(p.pid) for p, _ in started]
            finally:
                for process, _ in started:
                    stop(process)
            logger.info("storm on %s: %s", name, json.dumps(result))
            results[name] = result
    return results


def idle_memory(servers: list[str], steps: list[int], work: Path, hold: float, warmup: int = WARMUP) -> dict:
    results: dict = {}
    database = runner.sqlite_url(work / "idle.sqlite3")
    tokens, _ = prepare(database, steps[-1] + 1, work)
    timeout = len(steps) * (hold + 130) + 120
    for name in ["bare", *servers]:
        if name == "bare":
            port = free_port()
            with open(work / "bare.log", "ab") as log:
                process = subprocess.Popen([sys.executable, "-m", "bench.bare_ws", "--port", str(port)], cwd=REPO,
                                           stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            wait_port(port, process, what="the bare websockets server")
        else:
            # The CONNECT admission is not what is measured here: opened at the generator's pace.
            env = runner.project_env(database, STOMP_CONNECT_RATE="0")
            process, port = runner.start_python_server(name, env, work / f"idle-{name}.log")
        try:
            argv = ["idle", "--url", f"ws://127.0.0.1:{port}/ws", "--tokens", str(tokens), "--steps",
                    ",".join(map(str, steps)), "--server-pid", str(process.pid), "--hold", str(hold),
                    "--deadline", "120", "--warmup", str(warmup)]  # fmt: skip
            result = generator([*argv, *(["--bare"] if name == "bare" else [])], timeout=timeout)
        finally:
            stop(process)
        logger.info("idle memory on %s: %s", name, json.dumps(result))
        results[name] = result
    return results


def probe(servers: list[str], work: Path, out: Path, connections: int = 1000) -> dict:
    """tracemalloc's breakdown of ``connections`` idle connections on each server (bench/memory_probe.py)."""
    database = runner.sqlite_url(work / "probe.sqlite3")
    tokens, _ = prepare(database, connections + 101, work)
    found = {}
    for name in servers:
        snapshots = work / f"probe-{name}"
        shutil.rmtree(snapshots, ignore_errors=True)
        port = free_port()
        env = runner.project_env(database, STOMP_CONNECT_RATE="0")
        argv = [sys.executable, "-m", "bench.memory_probe", name, "--port", str(port), "--out", str(snapshots)]
        with open(work / f"probe-{name}.log", "ab") as log:
            process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_port(port, process, what=f"{name} under tracemalloc", timeout=120)
            # 100 first (one-time allocations: caches, the first connection's imports), then the measured ones.
            argv = ["idle", "--url", f"ws://127.0.0.1:{port}/ws", "--tokens", str(tokens), "--steps",
                    f"100,{connections + 100}", "--hold", "12", "--server-pid", str(process.pid),
                    "--snapshot-dir", str(snapshots), "--open-rate", "200", "--deadline", "300"]  # fmt: skip
            result = generator(argv, timeout=900)
        finally:
            stop(process)
        points = result["points"]
        measured = points[-1]["connections"] - points[-2]["connections"]
        compare = [sys.executable, "-m", "bench.memory_probe", "compare", str(snapshots / "snapshot-1.pickle"),
                   str(snapshots / "snapshot-2.pickle"), "--connections", str(measured)]  # fmt: skip
        done = subprocess.run(compare, cwd=REPO, capture_output=True, text=True, timeout=600, check=True)
        found[name] = {
            "connections": measured,
            "rss_kb_per_connection": round(
                (points[-1]["server_rss_kb"] - points[-2]["server_rss_kb"]) / max(measured, 1), 2
            ),
            "breakdown": done.stdout,
        }
        (out / f"memory-probe-{name}.txt").write_text(
            f"{measured} connections; RSS grew {found[name]['rss_kb_per_connection']} kB per connection "
            f"(tracemalloc itself adds to RSS)\n{done.stdout}"
        )
        logger.info("probe of %s:\n%s", name, done.stdout)
    return found


def _section(title: str, columns: list[str]) -> list[str]:
    return ["", f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}" if value and reference else ""


def table(report: dict) -> str:
    lines = ["# Issue 23: idle memory per connection and the reconnect storm", ""]
    lines.append(f"Run {report['started']}, load average before {report['load_before']}, after "
                 f"{report['load_after']}; {report.get('note', '')}")  # fmt: skip
    if report.get("storm_admission"):
        lines.append(f"\nStorm CONNECT admission per worker: {report['storm_admission']}")
    idle = report.get("idle_memory")
    if idle:
        warm = idle.get("bare", {}).get("points", [{}])[0].get("warmup_connections")
        lines += (
            [
                "",
                f"Absolute: (RSS - RSS after a warm-up of {warm} connections, kept open) / (connections "
                "- warm-up); from zero: (RSS - RSS before any connection) / connections, which charges the "
                "first connections' one-time costs to the first step.",
            ]
            if warm
            else []
        )
        lines += _section("Idle memory (JWT, one subscription, heart-beats 10 s both ways)", [
            "server", "connections open", "server RSS MB", "kB/conn (absolute, after warm-up)",
            "kB/conn (slope from previous step)", "generator RSS MB", "publish reached", "x bare (absolute)",
            "x bare (slope)", "kB/conn from zero (x bare)"])  # fmt: skip
        bare = {p.get("requested"): p for p in idle.get("bare", {}).get("points", [])}
        for name, result in idle.items():
            points = result.get("points", [])
            for point in points[1:]:
                reference = bare.get(point.get("requested"), {})
                ratio = _ratio(point.get("kb_per_connection"), reference.get("kb_per_connection"))
                slope_ratio = _ratio(point.get("slope_kb_per_connection"), reference.get("slope_kb_per_connection"))
                zero = point.get("kb_per_connection_from_zero")
                zero_ratio = _ratio(zero, reference.get("kb_per_connection_from_zero"))
                reached = result.get("publish_reached") if point is points[-1] else ""
                lines.append(
                    f"| {name} | {point['connections']:,} of {point['requested']:,} "
                    f"| {point['server_rss_kb'] / 1024:.0f} | {point.get('kb_per_connection')} "
                    f"| {point.get('slope_kb_per_connection', '')} | {point['client_rss_kb'] / 1024:.0f} | {reached} "
                    f"| {ratio} | {slope_ratio} | {zero or ''}{f' ({zero_ratio})' if zero_ratio else ''} |"
                )
    storm_results = report.get("storm")
    if storm_results:
        lines += _section("Reconnect storm (since-id resume of 3 rooms each, PostgreSQL)", [
            "server", "workers", "clients", "all subscribed after s", "p50 / p99 s", "failed", "busy refusals",
            "closed before subscribed (retried)", "max retry-after s", "replayed msgs", "replay errors",
            "db transactions/s peak / mean (total)", "server CPU s (all workers)", "generator CPU s"])  # fmt: skip
        for name, r in storm_results.items():
            db = r.get("database_transactions", {})
            lines.append(
                f"| {name} | {r.get('workers', 1)} | {r['clients']:,} | {r['seconds_to_all_subscribed']} "
                f"| {r['p50_s']} / {r['p99_s']} | {r['failed']} | {r['busy_refusals']} "
                f"| {r.get('closed_before_subscribed', '')} | {r['retry_after_max']} | {r['replayed_messages']:,} "
                f"| {r['errors'].get('replay', 0)} | {db.get('peak_per_s')} / {db.get('mean_per_s')} "
                f"({db.get('total')}) | {r.get('server_cpu_s', '')} | {r.get('client_cpu_s', '')} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--servers", default="daphne,uvicorn")
    parser.add_argument("--only", default="idle_memory,storm")
    parser.add_argument("--out", default=str(runner.RESULTS))
    parser.add_argument("--work", default=str(REPO / "var" / "bench"))
    parser.add_argument("--note", default="", help="what else was running (written into the results)")
    parser.add_argument("--workers", type=int, default=1, help="storm: worker processes per server, clients spread")
    parser.add_argument("--name", default="storm", help="results/<name>.md and .json")
    parser.add_argument(
        "--connect-rate", default="", help="storm: STOMP_CONNECT_RATE per worker (default: the setting's)"
    )
    parser.add_argument("--connect-burst", default="", help="storm: STOMP_CONNECT_BURST per worker")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="idle memory: connections before the baseline")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[storm %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 20000), hard), hard))
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    runner.WORK = work
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    servers = [s for s in args.servers.split(",") if s]
    only = set(args.only.split(","))
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": runner.load_average(),
                    "quick": args.quick, "note": args.note}  # fmt: skip
    if "idle_memory" in only:
        steps = [200, 1000] if args.quick else [2000, 10000, 18000]
        report["idle_memory"] = idle_memory(servers, steps, work, hold=2.0 if args.quick else 12.0,
                                            warmup=args.warmup)  # fmt: skip
    if "probe" in only:
        report["probe"] = probe(servers, work, out)
    if "storm" in only:
        admission = {k: v for k, v in (("STOMP_CONNECT_RATE", args.connect_rate),
                                       ("STOMP_CONNECT_BURST", args.connect_burst)) if v}  # fmt: skip
        report["storm_admission"] = admission or "defaults"
        report["storm"] = storm(servers, 500 if args.quick else 10_000, work, workers=args.workers, env_extra=admission)
    report["load_after"] = runner.load_average()
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    text = table(report)
    (out / f"{args.name}.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
