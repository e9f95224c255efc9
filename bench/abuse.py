"""Abuse scenarios (issue 16): the worker's RSS and an honest client's SEND->RECEIPT latency while one
user or a few sockets misbehave.

    python -m bench.abuse [--quick] [--servers daphne,uvicorn] [--scenarios nonreading,user_flood,...]

Scenarios, each on a fresh server (daphne through chatproject.daphne_server, uvicorn with
chatproject.uvicorn_ws), bounded in connections and seconds, 127.0.0.1 only:

- ``nonreading``: sockets that never read, each sending SUBSCRIBEs with ``since-id:0`` into a room with
  many stored messages (each replays up to CHAT_RESUME_MAX of them); 40 s, past STOMP_REPLAY_WAIT.
- ``user_flood``: one user opens 200 connections and every one SENDs into a room as fast as its own
  budget allows.
- ``sub_flood``: connections sending SUBSCRIBE/UNSUBSCRIBE pairs to a room topic (~250 pairs/s each, the
  issue's pace), each reconnecting when the server closes it.
- ``sse_flood``: one user tries to open 1,000 notification streams (a ticket, then the stream, never
  reading), as in the review that stalled a worker; the rest is refused with 429.
- ``slowloris``: 400 HTTP requests whose headers trickle in a line every few seconds and never end;
  30 s, past HTTP_RECEIVE_TIMEOUT, so the report shows how many the server cut off.

Meanwhile an honest member of the room SENDs every 100 ms with a receipt. The report (``abuse.json``,
``abuse.md`` in the results directory) gives the RSS before, at peak and after, the latency percentiles,
and what the abusers saw (refusals, ERROR codes, closes). Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "var" / "bench-abuse"
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))

from bench.run import SERVER_ENV  # noqa: E402
from scripts.processes import free_port, rss_kb, stop, wait_port  # noqa: E402

logger = logging.getLogger("bench.abuse")
ERRORS = "/user/queue/errors"
STORED = 500
SECRET = secrets.token_urlsafe(48)  # one per run: the tokens made in prepare() must verify on every server
SCENARIOS = ("nonreading", "user_flood", "sub_flood", "sse_flood", "slowloris")
ENV = SERVER_ENV  # the limits stay at their defaults: they are what is measured


# -- data -----------------------------------------------------------------------------------------------------
def prepare(database: Path, abusers: int) -> dict[str, Any]:
    """In a child process: migrate a fresh SQLite file, create the users, the room, its messages; tokens."""
    if database.exists():
        database.unlink()
    env = server_env(database)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True)
    out = subprocess.run(
        [sys.executable, "-m", "bench.abuse", "--fill", str(abusers)], cwd=REPO, env=env, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def fill(abusers: int) -> None:
    """(Child process, Django configured by the environment.) Print the tokens and the room as JSON."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    from chat.models import Membership, Message, Room

    users = get_user_model()
    honest = users.objects.create(username="honest", password="!")
    flooder = users.objects.create(username="flooder", password="!")
    others = users.objects.bulk_create([users(username=f"abuser{i}", password="!") for i in range(abusers)])
    others = list(users.objects.filter(username__startswith="abuser").order_by("id"))
    room = Room.objects.create(slug="abuse", name="abuse", creator=honest)
    Membership.objects.bulk_create(
        [Membership(room=room, user=u, role=Membership.Role.MEMBER) for u in [honest, flooder, *others]]
    )
    Message.objects.bulk_create(
        [Message(room=room, author=honest, body=f"{n:04d} " + "stored message " * 15) for n in range(STORED)]
    )
    token = lambda user: str(AccessToken.for_user(user))  # noqa: E731
    print(json.dumps({"honest": token(honest), "flooder": token(flooder), "abusers": [token(u) for u in others],
                      "slug": room.slug}))  # fmt: skip


def server_env(database: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **ENV, "DJANGO_SETTINGS_MODULE": "chatproject.settings"}
    env.pop("REDIS_URL", None)
    env.update(DATABASE_URL=f"sqlite:///{database}", SECRET_KEY=SECRET, PYTHONUNBUFFERED="1", **extra)
    return env


def start_server(kind: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if kind == "uvicorn":
        argv = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--ws",
                "chatproject.uvicorn_ws:SansIOProtocol", "--loop", "uvloop", "--http", "httptools",
                "--log-level", "warning", "--no-access-log", "chatproject.asgi:application"]  # fmt: skip
    else:
        argv = [sys.executable, "-m", "chatproject.daphne_server", "-b", "127.0.0.1", "-p", str(port), "-v", "0",
                "chatproject.asgi:application"]  # fmt: skip
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_port(port, process, timeout=60, what=kind)
    return process, port


# -- clients --------------------------------------------------------------------------------------------------
def wire(command: str, body: bytes = b"", **headers: str) -> str:
    lines = [command, *(f"{k.replace('_', '-')}:{v}" for k, v in headers.items()), "", ""]
    return "\n".join(lines) + body.decode() + "\0"


class Client:
    """A STOMP client on the websockets asyncio client: collects frames, answers ``receipts`` waiters."""

    def __init__(self, ws) -> None:
        from stompengine.stomp.codec import FrameParser

        self.ws = ws
        self.parser = FrameParser(max_frame_size=1 << 26)
        self.receipts: dict[str, asyncio.Future] = {}
        self.counts: dict[str, int] = {}
        self.error: str | None = None
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, token: str) -> Client:
        from websockets.asyncio.client import connect
        from websockets.typing import Subprotocol

        ws = await connect(f"{url}/ws", subprotocols=[Subprotocol("v12.stomp")], open_timeout=20, max_size=None)
        client = cls(ws)
        await ws.send(wire("CONNECT", accept_version="1.2", host="chat", Authorization=f"Bearer {token}"))
        return client

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for data in self.ws:
                for frame in self.parser.feed(data.encode() if isinstance(data, str) else data):
                    self._on_frame(frame)
        self.counts["closed"] = 1
        for future in self.receipts.values():
            if not future.done():
                future.set_result(None)

    def _on_frame(self, frame) -> None:
        kind = frame.command
        if kind == "MESSAGE" and frame.get("destination") == ERRORS:
            kind = "refused:" + json.loads(frame.body).get("code", "?")
            receipt = json.loads(frame.body).get("receipt")
            if receipt in self.receipts and not self.receipts[receipt].done():
                self.receipts[receipt].set_result(None)
        elif kind == "ERROR":
            kind = f"ERROR:{frame.get('code') or frame.get('message')}"
        elif kind == "RECEIPT":
            future = self.receipts.get(frame.get("receipt-id"))
            if future is not None and not future.done():
                future.set_result(time.perf_counter())
        self.counts[kind] = self.counts.get(kind, 0) + 1

    async def send(self, command: str, body: bytes = b"", **headers: str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self.ws.send(wire(command, body, **headers))
        except ConnectionClosed:
            self.counts["closed"] = 1  # the server closed it (the reader records why)

    async def request(self, command: str, receipt: str, body: bytes = b"", **headers: str) -> float | None:
        """Send with a receipt; seconds until the RECEIPT (None: refused or closed), bounded by 20 s."""
        future = self.receipts[receipt] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        await self.send(command, body, receipt=receipt, **headers)
        try:
            answered = await asyncio.wait_for(future, 20)
        except TimeoutError:
            return None
        finally:
            self.receipts.pop(receipt, None)
        return None if answered is None else answered - started

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self.reader.cancel()


class NonReader:
    """A raw WebSocket on a socket with a tiny receive buffer that reads only its handshake and CONNECTED."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ws: Any) -> None:
        self.reader = reader
        self.writer = writer
        self.ws = ws

    @classmethod
    async def open(cls, port: int, token: str) -> NonReader:
        from websockets.client import ClientProtocol
        from websockets.typing import Subprotocol
        from websockets.uri import parse_uri

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        uri = parse_uri(f"ws://127.0.0.1:{port}/ws")
        self = cls(reader, writer, ClientProtocol(uri, subprotocols=[Subprotocol("v12.stomp")], max_size=None))
        self.ws.send_request(self.ws.connect())
        await self._flush()
        while not self.ws.events_received():  # the 101 response; after CONNECT nothing is read again
            data = await asyncio.wait_for(self.reader.read(4096), 20)
            if not data:
                raise RuntimeError("the server closed during the handshake")
            self.ws.receive_data(data)
        self.ws.send_text(wire("CONNECT", accept_version="1.2", host="chat", Authorization=f"Bearer {token}").encode())
        await self._flush()
        return self

    async def _flush(self) -> None:
        for data in self.ws.data_to_send():
            self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), 20)

    async def send(self, frame: str) -> bool:
        if self.writer.is_closing():
            return False
        self.ws.send_text(frame.encode())
        try:
            await self._flush()
        except (OSError, TimeoutError):
            return False
        return True

    def close(self) -> None:
        self.writer.transport.abort()


# -- one scenario ---------------------------------------------------------------------------------------------
async def honest_loop(url: str, data: dict, stop_at: float, latencies: list[float], failures: list[str]) -> None:
    client = await Client.open(url, data["honest"])
    topic = f"/topic/rooms.{data['slug']}"
    await client.request("SUBSCRIBE", "sub", id="room", destination=topic)
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        body = json.dumps({"body": f"honest {n}", "client_id": f"h-{n}"}).encode()
        seconds = await client.request("SEND", f"h{n}", body, destination=f"/app/rooms.{data['slug']}",
                                       content_type="application/json")  # fmt: skip
        if seconds is None:
            failures.append(f"h{n}")
            if "closed" in client.counts:
                client = await Client.open(url, data["honest"])
                await client.request("SUBSCRIBE", "sub", id="room", destination=topic)
        else:
            latencies.append(seconds * 1000)
        await asyncio.sleep(0.1)
    await client.close()


async def nonreading(url: str, port: int, data: dict, stop_at: float, quick: bool) -> dict:
    topic = f"/topic/rooms.{data['slug']}"
    count, subscribes = (4, 60) if quick else (12, 250)
    sockets = [await NonReader.open(port, token) for token in data["abusers"][:count]]
    sent = 0
    for k in range(subscribes):
        if time.monotonic() > stop_at:
            break
        frame = wire("SUBSCRIBE", id=f"s{k}", destination=topic, since_id="0")
        results = await asyncio.gather(*(s.send(frame) for s in sockets))
        sent += sum(results)
    await asyncio.sleep(max(stop_at - time.monotonic(), 0))
    for s in sockets:
        s.close()
    return {"sockets": count, "subscribes_sent": sent}


async def user_flood(url: str, port: int, data: dict, stop_at: float, quick: bool) -> dict:
    count = 50 if quick else 200
    clients: list[Client] = []
    refused_connects = 0
    for _ in range(count):
        client = await Client.open(url, data["flooder"])
        await asyncio.sleep(0.01)
        clients.append(client)
    await asyncio.sleep(0.5)
    live = [c for c in clients if "CONNECTED" in c.counts and "closed" not in c.counts]
    refused_connects = len(clients) - len(live)
    for client in live:
        await client.send("SUBSCRIBE", id="errors", destination=ERRORS)

    async def flood(client: Client) -> int:
        n = 0
        while time.monotonic() < stop_at and "closed" not in client.counts:
            n += 1
            body = json.dumps({"body": f"flood {n}"}).encode()
            await client.send("SEND", body, destination=f"/app/rooms.{data['slug']}", content_type="application/json")
            await asyncio.sleep(0.02)  # 50/s per connection: under its own budget
        return n

    sent = sum(await asyncio.gather(*(flood(c) for c in live)))
    await asyncio.sleep(3)  # refusals of the SENDs still queued in the server
    totals = merge_counts(clients)
    for client in clients:
        await client.close()
    return {"connections_tried": count, "connections_refused": refused_connects, "sends": sent, **totals}


async def sub_flood(url: str, port: int, data: dict, stop_at: float, quick: bool) -> dict:
    count = 4 if quick else 10
    topic = f"/topic/rooms.{data['slug']}"
    pairs = 0
    reconnects = 0
    seen: list[Client] = []

    async def flood(token: str) -> None:
        nonlocal pairs, reconnects
        while time.monotonic() < stop_at:
            client = await Client.open(url, token)
            seen.append(client)
            await client.send("SUBSCRIBE", id="errors", destination=ERRORS)
            k = 0
            # About the pace (400 pairs in 1.8 s), on one connection until the server closes it.
            while time.monotonic() < stop_at and "closed" not in client.counts:
                await client.send("SUBSCRIBE", id=f"s{k}", destination=topic)
                await client.send("UNSUBSCRIBE", id=f"s{k}")
                pairs += 1
                k += 1
                await asyncio.sleep(0.004)
            await client.close()
            reconnects += 1

    await asyncio.gather(*(flood(token) for token in data["abusers"][:count]))
    return {"connections": count, "pairs_sent": pairs, "sessions": reconnects, **merge_counts(seen)}


async def sse_flood(url: str, port: int, data: dict, stop_at: float, quick: bool) -> dict:
    """One user asks for a ticket and opens a stream with it, again and again, and never reads a stream."""
    import httpx

    attempts = 100 if quick else 1000
    base = f"http://127.0.0.1:{port}"
    outcomes: dict[str, int] = {}
    streams: list[asyncio.StreamWriter] = []

    def count(what: str) -> None:
        outcomes[what] = outcomes.get(what, 0) + 1

    async with httpx.AsyncClient(timeout=10) as api:
        for _ in range(attempts):
            if time.monotonic() > stop_at:
                break
            answer = await api.post(
                f"{base}/api/notifications/ticket/", headers={"Authorization": f"Bearer {data['flooder']}"}
            )
            if answer.status_code != 201:
                count(f"ticket {answer.status_code} {answer.json().get('code', '')}".strip())
                continue
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET /api/notifications/stream/?ticket={answer.json()['ticket']} HTTP/1.1\r\n"
                         f"Host: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())  # fmt: skip
            status = (await asyncio.wait_for(reader.readline(), 10)).split(b" ")[1:2]
            code = status[0].decode() if status else "closed"
            count(f"stream {code}")
            if code == "200":
                streams.append(writer)  # held open, never read again
            else:
                writer.close()
    await asyncio.sleep(max(stop_at - time.monotonic(), 0))
    for writer in streams:
        writer.transport.abort()
    return {"attempts": attempts, **outcomes}


async def slowloris(url: str, port: int, data: dict, stop_at: float, quick: bool) -> dict:
    """Requests whose headers never end: a line every 3 s; counts the ones the server ends before we stop."""
    count = 100 if quick else 400
    connections: list[tuple[asyncio.StreamWriter, asyncio.Task]] = []

    async def ended(reader: asyncio.StreamReader) -> bytes:
        with contextlib.suppress(OSError):
            return await reader.read(256)  # the 408, or the end of the connection
        return b""

    for _ in range(count):
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET /api/me/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
            connections.append((writer, asyncio.ensure_future(ended(reader))))
    while time.monotonic() < stop_at:
        for writer, watcher in connections:
            if not watcher.done():
                with contextlib.suppress(OSError):
                    writer.write(b"X-Slow: 1\r\n")
        await asyncio.sleep(3)
    answers = [watcher.result() if watcher.done() else None for _, watcher in connections]
    for writer, watcher in connections:
        watcher.cancel()
        writer.transport.abort()
    return {
        "connections": len(connections),
        "answered_408": sum(1 for a in answers if a and a.startswith(b"HTTP/1.1 408")),
        "ended_by_server": sum(1 for a in answers if a is not None),
    }


def merge_counts(clients: list[Client]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for client in clients:
        for kind, n in client.counts.items():
            if kind.startswith(("refused:", "ERROR:", "closed")):
                totals[kind] = totals.get(kind, 0) + n
    return totals


def slow_consumer_lines(log: Path) -> int:
    """The server's 'closing as a slow consumer' warnings so far (a small log: read at once)."""
    return log.read_text(errors="replace").count("as a slow consumer")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)], 1)


async def run_scenario(
    name: str, kind: str, port: int, pid: int, data: dict, seconds: float, quick: bool, log: Path
) -> dict:
    url = f"ws://127.0.0.1:{port}"
    rss: list[int] = []

    async def sample(until: float) -> None:
        while time.monotonic() < until:
            rss.append(rss_kb(pid))
            await asyncio.sleep(0.25)

    await asyncio.sleep(1)
    before = rss_kb(pid)
    slow_before = slow_consumer_lines(log)
    stop_at = time.monotonic() + seconds
    latencies: list[float] = []
    failures: list[str] = []
    sampler = asyncio.ensure_future(sample(stop_at + 3))
    honest = asyncio.ensure_future(honest_loop(url, data, stop_at, latencies, failures))
    abuse = await asyncio.wait_for(SCENARIO_FUNCS[name](url, port, data, stop_at, quick), seconds + 120)
    await asyncio.wait_for(honest, 60)
    await sampler
    await asyncio.sleep(2)
    return {
        "server": kind,
        "scenario": name,
        "rss_kb_before": before,
        "rss_kb_peak": max(rss, default=before),
        "rss_kb_after": rss_kb(pid),
        "honest_sends": len(latencies) + len(failures),
        "honest_failed": len(failures),
        "honest_p50_ms": percentile(latencies, 0.5),
        "honest_p99_ms": percentile(latencies, 0.99),
        "honest_max_ms": round(max(latencies), 1) if latencies else None,
        "abuse": {**abuse, "slow_consumer_closes": slow_consumer_lines(log) - slow_before},
    }


SCENARIO_FUNCS = {"nonreading": nonreading, "user_flood": user_flood, "sub_flood": sub_flood,
                  "sse_flood": sse_flood, "slowloris": slowloris}  # fmt: skip


def table(results: list[dict]) -> str:
    lines = [
        "| server | scenario | RSS before / peak / after (MB) | honest SEND->RECEIPT p50 / p99 / max (ms) | "
        "honest sends (failed) | what the abusers saw |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        rss = " / ".join(f"{r[k] / 1024:.0f}" for k in ("rss_kb_before", "rss_kb_peak", "rss_kb_after"))
        lat = " / ".join(str(r[k]) for k in ("honest_p50_ms", "honest_p99_ms", "honest_max_ms"))
        abuse = ", ".join(f"{k} {v}" for k, v in r["abuse"].items())
        lines.append(f"| {r['server']} | {r['scenario']} | {rss} | {lat} | {r['honest_sends']} "
                     f"({r['honest_failed']}) | {abuse} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the abuse scenarios; write abuse.json and abuse.md; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer abusers, 8 s per scenario")
    parser.add_argument("--servers", default="daphne,uvicorn")
    parser.add_argument(
        "--scenarios", default="", help=f"default: all ({','.join(SCENARIOS)}); --quick skips slowloris"
    )
    parser.add_argument("--seconds", type=float, default=0, help="per scenario (default 20, quick 8)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--work", default=str(WORK), help="scratch directory (database, server logs)")
    parser.add_argument("--fill", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fill is not None:
        fill(args.fill)
        return 0
    logging.basicConfig(level=logging.INFO, format="[abuse %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    seconds = args.seconds or (8.0 if args.quick else 20.0)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    database = work / "abuse.sqlite3"
    data = prepare(database, 12)
    results = []
    # A quick run is too short to outlast HTTP_RECEIVE_TIMEOUT, so it leaves slow loris out.
    scenarios = [s for s in args.scenarios.split(",") if s] or [
        s for s in SCENARIOS if not (args.quick and s == "slowloris")
    ]
    for kind in [s for s in args.servers.split(",") if s]:
        for name in scenarios:
            env = server_env(database)
            log = work / f"abuse-{kind}.log"
            process, port = start_server(kind, env, log)
            try:
                # Non-readers wait for replay slots up to STOMP_REPLAY_WAIT (30 s) before they are cut off.
                # Slow-loris requests are cut off after HTTP_RECEIVE_TIMEOUT (20 s).
                longer = {"nonreading": 40.0, "slowloris": 30.0}.get(name, 0.0)
                length = max(seconds, longer) if not args.quick else seconds
                logger.info("%s on %s for %g s", name, kind, length)
                result = asyncio.run(run_scenario(name, kind, port, process.pid, data, length, args.quick, log))
            finally:
                stop(process)
            logger.info("%s", json.dumps(result))
            results.append(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "abuse.json").write_text(json.dumps(results, indent=1))
    text = table(results)
    (out / "abuse.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
