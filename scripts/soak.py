"""Soak test: thousands of STOMP connections with churn across two daphne workers + Redis + SQLite (WAL).

Every client slot loops until the deadline: connect (alternating workers), CONNECT with a JWT, subscribe
to its room and to /user/queue/errors, send a few chat messages with receipts, stay a while receiving,
DISCONNECT, pause, and again. A first, identical cycle (``--warmup`` seconds) warms the workers up; the
RSS of each worker after its clients left is the baseline. After the main run (``--duration``) and
its clients leaving, the script checks and prints one JSON report:

- lost: RECEIPTed messages missing from the database (must be 0);
- server_errors: ERROR lines and tracebacks in the workers' logs, and ERROR frames clients got (must be 0);
- leaks: RSS after the clients left vs the warmed-up baseline (within 10 %), Redis pub/sub channels and
  presence counts still held (must be none once everyone left).

Loopback only; every wait is bounded; the servers are started and stopped by PID.
Usage: ``python scripts/soak.py [--connections 2000] [--duration 600] [--warmup 180]`` (``make soak``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.processes import free_port, rss_kb, stop, wait_port  # noqa: E402


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# -- setup -----------------------------------------------------------------------------------------------------
def prepare(work: Path, users: int, rooms: int, lifetime: int) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """A fresh database with users in rooms; returns the server environment and (token, room slug) per user."""
    database = work / "soak.sqlite3"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatproject.settings", "DATABASE_URL": f"sqlite:///{database}",
           "DEBUG": "0", "SECRET_KEY": "soak-" + "k" * 60, "ALLOWED_HOSTS": "127.0.0.1,localhost",
           "FRONTEND_ORIGINS": "http://127.0.0.1:*", "JWT_ACCESS_LIFETIME": str(lifetime), "LOG_LEVEL": "WARNING",
           "STATIC_MANIFEST": "0", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True)
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY", "DEBUG",
                                           "ALLOWED_HOSTS", "JWT_ACCESS_LIFETIME", "STATIC_MANIFEST")})  # fmt: skip
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    from chat.models import Membership, Room

    user_model = get_user_model()
    user_model.objects.bulk_create([user_model(username=f"soak{i}", password="!") for i in range(users)])
    people = list(user_model.objects.filter(username__startswith="soak").order_by("id"))
    creator = people[0]
    room_objs = [Room.objects.create(slug=f"soak-{n}", name=f"soak {n}", creator=creator) for n in range(rooms)]
    Membership.objects.bulk_create(
        [Membership(room=room_objs[i % rooms], user=user) for i, user in enumerate(people) if i != 0]
        + [Membership(room=room_objs[0], user=creator, role=Membership.Role.OWNER)]
    )
    return env, [(str(AccessToken.for_user(user)), room_objs[i % rooms].slug) for i, user in enumerate(people)]


# -- the clients -----------------------------------------------------------------------------------------------
@dataclass
class Stats:
    label: str = "m"
    sessions: int = 0
    sent: int = 0
    receipted: set[str] = field(default_factory=set)
    delivered: int = 0
    error_frames: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    open_now: int = 0
    peak_open: int = 0


def frame(command: str, headers: dict[str, str], body: bytes = b"") -> str:
    from stompengine.stomp.codec import encode
    from stompengine.stomp.frames import Frame

    return encode(Frame(command, tuple(headers.items()), body)).decode()


async def session(url: str, token: str, slug: str, slot: int, seq: list[int], stats: Stats, args) -> None:
    import websockets
    from websockets.typing import Subprotocol

    from stompengine.stomp.codec import FrameParser

    parser = FrameParser(max_frame_size=1 << 22)
    receipts: dict[str, asyncio.Future] = {}
    loop = asyncio.get_running_loop()
    async with websockets.connect(url, subprotocols=[Subprotocol("v12.stomp")], open_timeout=30, close_timeout=10,
                                  max_size=None, ping_interval=None) as ws:  # fmt: skip
        stats.open_now += 1
        stats.peak_open = max(stats.peak_open, stats.open_now)
        connected = loop.create_future()

        async def reader() -> None:
            async for data in ws:
                for f in parser.feed(data.encode() if isinstance(data, str) else data):
                    if f.command == "CONNECTED" and not connected.done():
                        connected.set_result(True)
                    elif f.command == "RECEIPT":
                        future = receipts.pop(f.get("receipt-id") or "", None)
                        if future is not None and not future.done():
                            future.set_result(True)
                    elif f.command == "MESSAGE":
                        if f.get("destination") == "/user/queue/errors":
                            stats.error_frames.append("queue: " + f.body.decode(errors="replace")[:200])
                        else:
                            stats.delivered += 1
                    elif f.command == "ERROR":
                        stats.error_frames.append(f"{f.get('message')}: {f.body.decode(errors='replace')[:200]}")

        read_task = asyncio.create_task(reader())
        try:
            await ws.send(frame("CONNECT", {"accept-version": "1.2", "heart-beat": "0,0", "host": "127.0.0.1",
                                            "Authorization": f"Bearer {token}"}))  # fmt: skip
            await asyncio.wait_for(connected, 30)

            async def request(command: str, headers: dict[str, str], body: bytes = b"") -> None:
                receipt = f"r{slot}-{seq[0]}"
                seq[0] += 1
                receipts[receipt] = loop.create_future()
                await ws.send(frame(command, {**headers, "receipt": receipt}, body))
                await asyncio.wait_for(receipts[receipt], 60)

            await request("SUBSCRIBE", {"id": "e", "destination": "/user/queue/errors"})
            await request("SUBSCRIBE", {"id": "r", "destination": f"/topic/rooms.{slug}"})
            stats.sessions += 1
            for _ in range(args.messages):
                await asyncio.sleep(random.uniform(0.5, 1.5) * args.send_interval)
                client_id = f"{stats.label}{slot}-{seq[0]}"  # unique per run: a repeated one is stored once
                body = json.dumps({"body": f"soak message {client_id}", "client_id": client_id}).encode()
                stats.sent += 1
                await request("SEND", {"destination": f"/app/rooms.{slug}", "content-type": "application/json"}, body)
                stats.receipted.add(client_id)
            await asyncio.sleep(random.uniform(0, args.send_interval))
            await request("DISCONNECT", {})
        finally:
            stats.open_now -= 1
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await read_task


async def slot_loop(slot: int, workers: list[str], people, deadline: float, stats: Stats, args) -> None:
    token, slug = people[slot % len(people)]
    seq = [0]
    cycle = slot
    await asyncio.sleep(random.uniform(0, args.ramp))  # spread the first connects
    backoff = 1.0
    while time.monotonic() < deadline:
        url = workers[cycle % len(workers)]
        cycle += 1
        try:
            await session(url, token, slug, slot, seq, stats, args)
            backoff = 1.0
            await asyncio.sleep(random.uniform(0.2, 2.0))
        except Exception as exc:  # counted; the slot reconnects with jittered backoff, as stompjs clients do
            stats.failures[type(exc).__name__] += 1
            await asyncio.sleep(random.uniform(0.5, 1.0) * backoff)
            backoff = min(backoff * 2, 30.0)


async def run_cycle(workers: list[str], people, seconds: float, stats: Stats, args) -> None:
    deadline = time.monotonic() + seconds
    tasks = [asyncio.create_task(slot_loop(i, workers, people, deadline, stats, args)) for i in range(args.connections)]
    progress_at = time.monotonic()
    while not all(t.done() for t in tasks):
        await asyncio.sleep(1)
        if time.monotonic() - progress_at >= 30:
            progress_at = time.monotonic()
            out(
                f"  open {stats.open_now} (peak {stats.peak_open}), sessions {stats.sessions}, sent {stats.sent}, "
                f"receipted {len(stats.receipted)}, delivered {stats.delivered}, failures {dict(stats.failures)}"
            )
        if time.monotonic() > deadline + 180:  # bounded: sessions end within their own timeouts long before
            for t in tasks:
                t.cancel()
            break
    await asyncio.gather(*tasks, return_exceptions=True)


# -- checks ----------------------------------------------------------------------------------------------------
def server_errors(logs: list[Path]) -> list[str]:
    found = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                found.append(f"{log.name}: {line[:300]}")
    return found


def redis_leftovers(port: int) -> dict[str, int]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    channels = [c for c in client.pubsub_channels("stomp:*")]
    presence = 0
    for key in client.scan_iter("stomp:presence:*"):
        presence += sum(int(v) for v in client.hgetall(key).values() if int(v) > 0)
    client.close()
    return {"stomp_channels": len(channels), "presence_sessions": presence}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=600, help="seconds of the main run")
    parser.add_argument("--warmup", type=float, default=180, help="seconds of the warm-up cycle")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2, help="SENDs per session")
    parser.add_argument("--send-interval", type=float, default=20.0, help="mean seconds between a session's SENDs")
    parser.add_argument("--ramp", type=float, default=120.0, help="seconds over which the first connects spread")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait after clients left")
    parser.add_argument("--report", type=Path, default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        out("redis-server is not installed (apt-get install redis-server)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    processes: list[subprocess.Popen] = []
    try:
        lifetime = int(args.warmup + args.duration + 3600)
        env, people = prepare(work, args.users, args.rooms, lifetime)
        redis_port = free_port()
        argv = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        redis = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        processes.append(redis)
        wait_port(redis_port, redis, what="redis-server")
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        workers, pids, logs = [], [], []
        for n in range(2):
            port = free_port()
            log = work / f"worker{n}.log"
            logs.append(log)
            with open(log, "wb") as handle:
                process = subprocess.Popen([sys.executable, "-m", "chatproject.daphne_server", "-b", "127.0.0.1",
                                            "-p", str(port), "chatproject.asgi:application"], cwd=REPO, env=env,
                                           stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
            processes.append(process)
            wait_port(port, process, what=f"worker {n}")
            workers.append(f"ws://127.0.0.1:{port}/ws")
            pids.append(process.pid)
        out(f"soak: {args.connections} connections, 2 workers {pids}, redis :{redis_port}, work dir {work}")

        warm = Stats(label="w")
        out(f"warm-up cycle: {args.warmup:g}s")
        asyncio.run(run_cycle(workers, people, args.warmup, warm, args))
        time.sleep(args.settle)
        baseline = [rss_kb(pid) for pid in pids]
        out(f"baseline RSS after warm-up (kB): {baseline}")

        main_stats = Stats()
        out(f"main run: {args.duration:g}s")
        started = time.monotonic()
        asyncio.run(run_cycle(workers, people, args.duration, main_stats, args))
        elapsed = time.monotonic() - started
        time.sleep(args.settle)
        final = [rss_kb(pid) for pid in pids]
        alive = [p.poll() is None for p in processes]

        stored = {row[0] for row in sqlite3.connect(work / "soak.sqlite3").execute(
            "SELECT client_id FROM chat_message WHERE client_id IS NOT NULL")}  # fmt: skip
        receipted = warm.receipted | main_stats.receipted
        lost = sorted(receipted - stored)
        errors = server_errors(logs)
        leftovers = redis_leftovers(redis_port)
        growth = [round(100.0 * (f - b) / b, 1) for b, f in zip(baseline, final, strict=True)]
        report = {
            "connections": args.connections,
            "duration_s": round(elapsed, 1),
            "warmup_s": args.warmup,
            "sessions": main_stats.sessions,
            "peak_open": main_stats.peak_open,
            "sent": main_stats.sent,
            "receipted": len(main_stats.receipted),
            "delivered": main_stats.delivered,
            "client_failures": dict(main_stats.failures),
            "client_failures_warmup": dict(warm.failures),
            "error_frames": (warm.error_frames + main_stats.error_frames)[:20],
            "lost_acknowledged": len(lost),
            "server_errors": errors[:20],
            "rss_baseline_kb": baseline,
            "rss_after_kb": final,
            "rss_growth_percent": growth,
            "redis_leftovers": leftovers,
            "processes_alive": all(alive),
        }
        report["ok"] = (
            not lost and not errors and not report["error_frames"] and all(alive)
            and all(g <= 10.0 for g in growth) and not any(leftovers.values())
        )  # fmt: skip
        out(json.dumps(report, indent=2))
        if args.report:
            args.report.write_text(json.dumps(report, indent=2) + "\n")
        return 0 if report["ok"] else 1
    finally:
        for process in reversed(processes):
            stop(process, timeout=20)  # 2,000 connections to close
        kept = REPO / "test-output"
        kept.mkdir(exist_ok=True)
        for log in work.glob("worker*.log"):
            shutil.copy(log, kept / f"soak-{log.name}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
