"""SSE notification benchmark (not a test): thousands of streams on one daphne, stored notifications at a paced rate.

What it does, every server started and stopped by PID on 127.0.0.1, everything bounded in count and time:

1. a fresh SQLite database under ``var/bench-sse/`` with ``--streams`` users, a private ``redis-server`` and
   one ``daphne`` process (``DEBUG=0``, the Redis pub/sub notification layer);
2. one stream per user, opened with a single-use ticket by an asyncio client in this process (raw sockets,
   chunked decoding, the project's SSE parser); the daphne RSS is read from ``/proc/<pid>/status`` before
   and after, for the idle cost per stream;
3. for each ``--rates`` step, ``--publishers`` separate processes create stored notifications
   (``notification_create``: one INSERT and commit each, published on commit) for random users at the
   paced total rate for ``--duration`` seconds; each payload carries its creation wall-clock time, so the
   latency is creation-to-delivery (database write, commit, Redis, daphne, socket, client parse);
4. a report: created/s, delivered/s, lost and duplicated deliveries, RSS per stream, and two latencies:
   creation-to-delivery (from before the INSERT, so it includes waiting for SQLite's write lock) and
   commit-to-delivery (from the commit, which the publisher stamps: what the stream path adds).

    .venv/bin/python bench/sse_bench.py                      # 2,000 streams, 500 and 1,000 notifications/s
    .venv/bin/python bench/sse_bench.py --streams 200 --rates 200 --duration 5   # a quick smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "var" / "bench-sse"
sys.path.insert(0, str(REPO))

from scripts.processes import cpu_seconds, free_port, rss_kb, stop, wait_port  # noqa: E402

logger = logging.getLogger("sse_bench")
CONNECT_CONCURRENCY = 50
DRAIN_SECONDS = 10.0
SETTLE_SECONDS = 3.0


def server_env(db_path: Path, redis_url: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        "DATABASE_URL": f"sqlite:///{db_path}",
        "REDIS_URL": redis_url,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SITE_ORIGIN": "http://127.0.0.1:8000",
        "FRONTEND_ORIGINS": "http://127.0.0.1:*",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    return env


# --- The stream client -----------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    received_at: dict[int, float] = field(default_factory=dict)
    ids: set[int] = field(default_factory=set)
    duplicates: int = 0
    open_streams: int = 0
    failed_streams: int = 0
    heartbeats: int = 0

    def reset_step(self) -> None:
        self.latencies_ms = []
        self.received_at = {}


async def read_stream(port: int, ticket: str, stats: Stats, opened: asyncio.Event) -> None:
    """One EventSource-like client: GET with a ticket, decode chunked transfer, parse SSE, record latency."""
    from notifications.sse import SSEParser

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    counted = False
    try:
        request = (
            f"GET /api/notifications/stream/?ticket={ticket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        )
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200" or b"transfer-encoding: chunked" not in head.lower():
            stats.failed_streams += 1
            opened.set()
            return
        stats.open_streams += 1
        counted = True
        opened.set()
        parser = SSEParser()
        while True:
            size_line = await reader.readline()
            if not size_line:
                return
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                return
            chunk = await reader.readexactly(size + 2)
            received = time.time()
            comments = len(parser.comments)
            for event in parser.feed(chunk[:-2]):
                if event.id is None:
                    continue
                event_id = int(event.id)
                if event_id in stats.ids:
                    stats.duplicates += 1
                    continue
                stats.ids.add(event_id)
                stats.received_at[event_id] = received
                sent_at = json.loads(event.data)["payload"].get("sent_at")
                if sent_at is not None:
                    stats.latencies_ms.append((received - sent_at) * 1000)
            stats.heartbeats += len(parser.comments) - comments
            parser.comments.clear()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        if counted:
            stats.open_streams -= 1
        opened.set()
        writer.close()


# --- The publisher process ---------------------------------------------------------------------------------


def publisher_main(args: argparse.Namespace) -> None:
    """``--publisher``: create stored notifications at a paced rate; print a JSON summary."""
    import django

    django.setup()
    from channels.db import database_sync_to_async
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from notifications import services
    from notifications.models import Notification

    user_model = get_user_model()
    user_ids = [int(x) for x in args.user_ids.split(",")]
    total = int(args.rate * args.duration / args.batch)  # transactions, each storing ``batch`` rows
    rng = random.Random(args.seed)

    committed: list[tuple[int, float]] = []

    def create(user_ids: list[int], seq: int) -> None:
        payload = {"sent_at": time.time(), "seq": seq, "text": "benchmark notification"}
        stamp: list[float] = []
        # Registered before the service's own on_commit (the publish), so it runs first: the commit time.
        with transaction.atomic():
            transaction.on_commit(lambda: stamp.append(time.time()))
            if len(user_ids) == 1:
                recipient = user_model(pk=user_ids[0])
                ids = [services.notification_create(recipient=recipient, kind="announcement", payload=payload).pk]
            else:
                services.notifications_create_bulk(recipient_ids=user_ids, kind="announcement", payload=payload)
                ids = list(
                    Notification.objects.filter(recipient_id__in=user_ids, payload__seq=seq, kind="announcement")
                    .order_by("-id")
                    .values_list("id", flat=True)[: len(user_ids)]
                )
        committed.extend((pk, stamp[0]) for pk in ids)

    async def run() -> dict:
        create_async = database_sync_to_async(create)
        start = time.monotonic()
        behind = 0
        for seq in range(total):
            delay = start + seq * args.batch / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05:
                behind += 1
            await create_async(rng.sample(user_ids, args.batch), seq)
        elapsed = time.monotonic() - start
        return {"created": len(committed), "seconds": elapsed, "late": behind, "committed": committed}

    print(json.dumps(asyncio.run(run())), flush=True)


# --- The driver --------------------------------------------------------------------------------------------


def prepare_database(db_path: Path, streams: int) -> tuple[list[int], list[str]]:
    """Migrate a fresh database, create the users and one ticket per user (as POST .../ticket/ would)."""
    os.environ["DATABASE_URL"] = f"sqlite:///{db_path}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command

    from notifications.tickets import stream_ticket_issue

    call_command("migrate", verbosity=0)
    user_model = get_user_model()
    password = make_password("bench-password-123")
    user_model.objects.bulk_create(
        [user_model(username=f"bench{i:05d}", password=password) for i in range(streams)], batch_size=1000
    )
    users = list(user_model.objects.order_by("pk"))
    tickets = [stream_ticket_issue(user=user) for user in users]
    return [u.pk for u in users], tickets


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(args: argparse.Namespace, daphne: subprocess.Popen, port: int, user_ids: list[int],
                tickets: list[str], env: dict[str, str]) -> dict:  # fmt: skip
    stats = Stats()
    rss_before = rss_kb(daphne.pid)
    semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)
    tasks: list[asyncio.Task] = []

    async def open_one(ticket: str) -> None:
        async with semaphore:
            opened = asyncio.Event()
            tasks.append(asyncio.create_task(read_stream(port, ticket, stats, opened)))
            await asyncio.wait_for(opened.wait(), timeout=60)

    started = time.monotonic()
    await asyncio.gather(*(open_one(t) for t in tickets))
    connect_seconds = time.monotonic() - started
    await asyncio.sleep(SETTLE_SECONDS)
    # The load generator's own garbage collection (2,000 readers, a growing id set) would show up as
    # delivery latency: move what exists now out of the collector's sight, and time the pauses.
    gc.freeze()
    gc_pauses: list[float] = []
    gc_started: list[float] = []

    def gc_timer(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[:] = [time.perf_counter()]
        elif gc_started:
            gc_pauses.append((time.perf_counter() - gc_started[0]) * 1000)

    gc.callbacks.append(gc_timer)
    rss_idle = rss_kb(daphne.pid)
    result: dict = {
        "streams": len(tickets),
        "open_streams": stats.open_streams,
        "failed_streams": stats.failed_streams,
        "connect_seconds": round(connect_seconds, 2),
        "rss_before_kb": rss_before,
        "rss_idle_kb": rss_idle,
        "rss_per_idle_stream_kb": round((rss_idle - rss_before) / max(1, stats.open_streams), 1),
        "steps": [],
    }
    logger.info("%d streams open in %.1fs; idle RSS %d kB (%.1f kB per stream)", stats.open_streams,
                connect_seconds, rss_idle, result["rss_per_idle_stream_kb"])  # fmt: skip

    for rate in args.rates:
        stats.reset_step()
        ids_before = len(stats.ids)
        per_publisher = rate / args.publishers
        shares = [user_ids[i :: args.publishers] for i in range(args.publishers)]
        cpu_before = cpu_seconds(daphne.pid)
        step_start = time.monotonic()
        publishers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--publisher",
                "--rate",
                str(per_publisher),
                "--duration",
                str(args.duration),
                "--user-ids",
                ",".join(map(str, share)),
                "--seed",
                str(n),
                "--batch",
                str(args.batch),
                env={**env, "DB_CONN_MAX_AGE": "600"},
                stdout=subprocess.PIPE,
                cwd=REPO,
            )
            for n, share in enumerate(shares)
        ]
        outputs = await asyncio.wait_for(
            asyncio.gather(*(p.communicate() for p in publishers)), timeout=args.duration * 4 + 60
        )
        summaries = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
        created = sum(s["created"] for s in summaries)
        create_seconds = max(s["seconds"] for s in summaries)
        deadline = time.monotonic() + DRAIN_SECONDS
        # Polling a counter that 2,000 readers bump: simpler than an Event set on every delivery.
        while len(stats.ids) - ids_before < created and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        delivered = len(stats.ids) - ids_before
        step_seconds = time.monotonic() - step_start
        latencies = stats.latencies_ms
        committed_at = dict(item for s in summaries for item in s["committed"])
        from_commit = [(stats.received_at[i] - t) * 1000 for i, t in committed_at.items() if i in stats.received_at]
        step = {
            "target_rate": rate,
            "per_transaction": args.batch,
            "created": created,
            "created_per_second": round(created / create_seconds, 1),
            "publisher_late": sum(s["late"] for s in summaries),
            "delivered": delivered,
            "delivered_per_second": round(delivered / create_seconds, 1),
            "lost": created - delivered,
            "duplicates": stats.duplicates,
            "latency_ms_p50": round(percentile(latencies, 0.50), 1),
            "latency_ms_p99": round(percentile(latencies, 0.99), 1),
            "latency_ms_max": round(max(latencies), 1) if latencies else None,
            "latency_ms_mean": round(statistics.fmean(latencies), 1) if latencies else None,
            "commit_to_delivery_ms_p50": round(percentile(from_commit, 0.50), 1),
            "commit_to_delivery_ms_p99": round(percentile(from_commit, 0.99), 1),
            "commit_to_delivery_ms_max": round(max(from_commit), 1) if from_commit else None,
            "daphne_cpu_percent": round(100 * (cpu_seconds(daphne.pid) - cpu_before) / step_seconds, 1),
            "rss_after_kb": rss_kb(daphne.pid),
        }
        step["client_gc_pause_ms_max"] = round(max(gc_pauses), 1) if gc_pauses else 0.0
        gc_pauses.clear()
        result["steps"].append(step)
        logger.info("rate %s/s: %s", rate, json.dumps(step))
    result["heartbeats_seen"] = stats.heartbeats
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[500.0, 1000.0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate step")
    parser.add_argument("--publishers", type=int, default=1, help="publisher processes sharing the rate")
    parser.add_argument("--batch", type=int, default=1, help="notifications stored per transaction (1: each alone)")
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--user-ids", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        publisher_main(args)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not 1 <= args.streams <= 10_000 or not 0 < args.duration <= 120 or any(not 0 < r <= 5000 for r in args.rates):
        parser.error("bounded on purpose: 1-10000 streams, up to 120 s per step, rates up to 5000/s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * args.streams + 512
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))  # daphne inherits it

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    db_path = WORK / "bench.sqlite3"
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        sys.exit("redis-server is not installed (Debian package redis-server)")
    redis_port, daphne_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = server_env(db_path, redis_url)
    os.environ.update({k: env[k] for k in ("REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "LOG_LEVEL")})
    logger.info("preparing %d users and tickets in %s", args.streams, db_path)
    user_ids, tickets = prepare_database(db_path, args.streams)

    processes: list[subprocess.Popen] = []
    try:
        redis_proc = subprocess.Popen(
            [redis_binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--logfile", str(WORK / "redis.log")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        processes.append(redis_proc)
        wait_port(redis_port, redis_proc, timeout=10, what="redis-server")
        with open(WORK / "daphne.log", "wb") as log:
            daphne = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(daphne_port),
                 "chatproject.asgi:application"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes.append(daphne)
        wait_port(daphne_port, daphne, timeout=30, what="daphne")
        # One ordinary request first, so the baseline RSS includes a warmed-up Django.
        with socket.create_connection(("127.0.0.1", daphne_port)) as s:
            s.sendall(b"GET /healthz/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            while s.recv(65536):
                pass
        time.sleep(1)
        result = asyncio.run(drive(args, daphne, daphne_port, user_ids, tickets, env))
        result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
        (WORK / "results.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    finally:
        for process in reversed(processes):
            stop(process)


if __name__ == "__main__":
    main()
