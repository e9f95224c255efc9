"""A light many-connection STOMP-over-WebSocket client (raw asyncio protocol): reconnect storms and idle holds.

Used by ``bench/storm.py`` (10,000-client storm, idle memory at 2,000 / 10,000 / 18,000) and by the storm
test (1,000 clients against a real daphne). One Python object and one socket per connection, no
per-connection task or timer: heart-beats go out from one shared loop over every connection, so the
generator's own memory stays small and is reported separately. Sockets are spread over several
127.0.0.x source addresses (one address has only ~28,000 ephemeral ports towards one server port).

    python -m scripts.stomp_storm storm --url ws://127.0.0.1:8000/ws --tokens t.txt --clients 1000 \
        --rooms storm-0,storm-1 --since-file since.json --deadline 30
    python -m scripts.stomp_storm idle --url ws://127.0.0.1:8000/ws --tokens t.txt --steps 2000,10000 \
        --server-pid 1234

Prints one JSON object (the result) as its last line. Only 127.0.0.x is accepted. Every loop is bounded in
count and time (``--deadline``, ``--max-attempts``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stompengine.stomp.codec import ALL_COMMANDS, FrameParser  # noqa: E402  (sans-IO: no Django)

# The bare server echoes what it is sent: our CONNECT, and PUBLISH (its broadcast) besides STOMP's commands.
COMMANDS = ALL_COMMANDS | {"PUBLISH"}
HEARTBEAT_MS = 10_000
SOURCES = tuple(f"127.0.0.{n}" for n in range(2, 10))  # eight source addresses
# Where a storm client's successful attempt spent its time: TCP connect (waiting in the server's listen
# queue, or for a SYN retransmission when that queue overflowed), WebSocket handshake, STOMP CONNECT
# (admission, JWT, user), SUBSCRIBEs until the last RECEIPT (membership checks, since-id replays).
PHASES = ("tcp", "handshake", "connect", "subscribe")
RECONNECT_S = (1, 2, 4, 8, 15, 30)  # the page's reconnect delays (static/js/chat.js), halved plus jitter


def phase_times(stamps: list[list[float]]) -> dict[str, dict[str, float]]:
    """p50 / p99 / max seconds of each phase over the clients' successful attempts."""
    found = {}
    for n, name in enumerate(PHASES):
        spans = sorted(s[n + 1] - s[n] for s in stamps)
        if spans:
            found[name] = {"p50": round(spans[len(spans) // 2], 3), "p99": round(spans[int(len(spans) * 0.99) - 1], 3),
                           "max": round(spans[-1], 3)}  # fmt: skip
    return found


def rss_kb(pid: int) -> int:
    """Resident memory of a process (kB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def frame(command: str, headers: dict[str, str], body: str = "") -> bytes:
    lines = [command, *(f"{k}:{v}" for k, v in headers.items()), "", body]
    return ("\n".join(lines) + "\0").encode()


class Client(asyncio.Protocol):
    """One connection: WebSocket handshake, STOMP CONNECT, SUBSCRIBEs with since-id, then idle."""

    __slots__ = ("attempt", "closed", "connected", "handled", "index", "owner", "parser", "raw", "receipts",
                 "stamps", "transport", "upgraded")  # fmt: skip

    def __init__(self, owner: Run, index: int) -> None:
        self.owner = owner
        self.index = index
        self.attempt = 0
        self.reset()

    def reset(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.connected = False
        self.closed = False
        self.handled = False  # this attempt's end is already dealt with (a busy retry, a refusal)
        self.raw = b""
        self.parser = FrameParser(max_frame_size=1 << 24, commands=COMMANDS)
        self.receipts = 0
        self.stamps: list[float] = [time.monotonic()]  # this attempt's start, then each phase's end

    # -- asyncio.Protocol ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        self.stamps.append(time.monotonic())  # TCP connected (accepted from the server's listen queue)
        run = self.owner
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {run.path} HTTP/1.1\r\nHost: {run.host}:{run.port_of(self)}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: v12.stomp\r\nOrigin: http://127.0.0.1:8000\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if not self.upgraded:
            head, sep, rest = self.raw.partition(b"\r\n\r\n")
            if not sep:
                return
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.owner.failed(self, f"handshake {head[:40]!r}")
                self.abort()  # and comes back, as the page does (connection_lost -> Run.lost)
                return
            self.upgraded = True
            self.stamps.append(time.monotonic())  # the 101: WebSocket handshake done
            self.raw = rest
            if self.owner.args.until == "handshake":
                self.owner.finished(self)
                return
            self.owner.opened(self)
        self._frames()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.owner.lost(self)

    # -- WebSocket ------------------------------------------------------------------------------------------
    def _frames(self) -> None:
        raw = self.raw
        while len(raw) >= 2:
            opcode, length, offset = raw[0] & 0x0F, raw[1] & 0x7F, 2
            if length == 126:
                if len(raw) < 4:
                    break
                length, offset = int.from_bytes(raw[2:4], "big"), 4
            elif length == 127:
                if len(raw) < 10:
                    break
                length, offset = int.from_bytes(raw[2:10], "big"), 10
            if len(raw) < offset + length:
                break
            payload, raw = raw[offset : offset + length], raw[offset + length :]
            if opcode in (0, 1, 2):
                for parsed in self.parser.feed(payload):
                    headers = dict(reversed(parsed.headers))  # a repeated header: the first one wins
                    self.owner.stomp(self, parsed.command, headers, parsed.body.decode("utf-8", "replace"))
            elif opcode == 9:
                self.send_ws(payload, opcode=10)
            elif opcode == 8:
                self.abort()
        self.raw = raw

    def send_ws(self, payload: bytes, *, opcode: int = 1) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = bytes([0x80 | opcode, 0x80 | length])
        elif length < 65536:
            head = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload)) if length < 64 else _mask(payload, mask)
        self.transport.write(head + mask + masked)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _mask(payload: bytes, mask: bytes) -> bytes:
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


class Run:
    """Many clients against one server; what happens to each is counted here."""

    def __init__(self, args: argparse.Namespace, tokens: list[str]) -> None:
        # Several URLs (comma-separated): workers of one deployment, client i connecting to URL i % n, as a
        # proxy spreading connections over its upstream workers would.
        self.ports = []
        for one in args.url.split(","):
            url = urlsplit(one)
            if url.hostname not in ("127.0.0.1", "localhost"):
                raise SystemExit("only 127.0.0.1 is allowed")
            self.ports.append(url.port or 80)
        if url.hostname not in ("127.0.0.1", "localhost"):
            raise SystemExit("only 127.0.0.1 is allowed")
        self.args = args
        self.host, self.port, self.path = "127.0.0.1", url.port or 80, url.path or "/"
        self.tokens = tokens
        self.bare = args.bare
        self.rooms = [r for r in (args.rooms or "").split(",") if r]
        # {"<client>": {"<room>": [since-id, messages stored after it]}}
        self.since: dict[str, dict[str, list[int]]] = (
            json.loads(Path(args.since_file).read_text()) if args.since_file else {}
        )
        self.clients: list[Client] = []
        self.started = time.monotonic()
        self.done_at: dict[int, float] = {}
        self.busy = 0
        self.closed_early = 0  # storm: connections closed before subscribed (then retried)
        self.retry_after: list[int] = []
        self.errors: dict[str, int] = {}
        self.problems: list[str] = []
        self.replayed = 0
        self.live_received = 0
        self.on_done: Callable[[], None] | None = None
        self.all_done = asyncio.Event()
        self.expected = 0
        self.ending = False  # set before the generator closes every connection itself
        self.last_seen: dict[tuple[int, str], int] = {}
        self.counts: dict[tuple[int, str], int] = {}
        self.phases: list[list[float]] = []  # storm: each subscribed client's last attempt, phase by phase

    # -- connecting -------------------------------------------------------------------------------------------
    def port_of(self, client: Client) -> int:
        return self.ports[client.index % len(self.ports)]

    async def connect(self, client: Client) -> None:
        client.reset()
        client.attempt += 1
        loop = asyncio.get_running_loop()
        source = SOURCES[client.index % len(SOURCES)]
        try:
            await loop.create_connection(lambda: client, self.host, self.port_of(client), local_addr=(source, 0))
        except OSError as exc:
            self.failed(client, f"connect: {type(exc).__name__}")
            self.retry(client, 1.0)

    def opened(self, client: Client) -> None:
        if self.bare:
            client.send_ws(frame("CONNECT", {"accept-version": "1.2", "heart-beat": "10000,10000"}))
            return
        token = self.tokens[client.index]
        client.send_ws(frame("CONNECT", {"accept-version": "1.2", "heart-beat": f"{HEARTBEAT_MS},{HEARTBEAT_MS}",
                                         "Authorization": f"Bearer {token}"}))  # fmt: skip

    def subscriptions(self, client: Client) -> list[dict[str, str]]:
        if self.args.mode == "idle":
            return [{"id": "s0", "destination": self.args.idle_destination, "receipt": "r0"}]
        own = self.since.get(str(client.index), {})
        subs = [
            {"id": f"s{n}", "destination": f"/topic/rooms.{room}", "receipt": f"r{n}"}
            for n, room in enumerate(self.rooms)
        ]
        if self.since:  # without a since file (profiling): plain subscriptions, no resume
            for sub, room in zip(subs, self.rooms, strict=True):
                sub["since-id"] = str(own.get(room, [0])[0])
        return subs

    def stomp(self, client: Client, command: str, headers: dict[str, str], body: str) -> None:
        if self.bare:  # the echo of our CONNECT: the bare server's "connected and subscribed"
            if not client.connected:
                client.connected = True
                self.finished(client)
            elif body.startswith("PUBLISH") or command.startswith("PUBLISH"):
                self.live_received += 1
            return
        if command == "CONNECTED":
            client.connected = True
            client.stamps.append(time.monotonic())
            if self.args.until == "connect":
                self.finished(client)
                return
            for sub in self.subscriptions(client):
                client.send_ws(frame("SUBSCRIBE", sub))
        elif command == "RECEIPT":
            client.receipts += 1
            if client.receipts == len(self.subscriptions(client)):
                client.stamps.append(time.monotonic())
                if self.args.mode == "storm" and len(client.stamps) == len(PHASES) + 1:
                    self.phases.append(client.stamps)
                self.check_complete(client)
                self.finished(client)
        elif command == "MESSAGE":
            if headers.get("subscription") == "s0" and self.args.mode == "idle":
                self.live_received += 1
                return
            self.check_replay(client, headers, body)
        elif command == "ERROR":
            code = headers.get("code", headers.get("message", "?"))
            if code == "busy":
                client.handled = True
                self.busy += 1
                after = int(headers.get("retry-after", "1"))
                self.retry_after.append(after)
                client.abort()
                # As the page does: the server's retry-after, plus jitter so the refused do not return together.
                self.retry(client, after * (1 + random.random() * 0.5))  # noqa: S311  (jitter, not a secret)
            else:
                client.handled = True
                self.failed(client, f"ERROR {code}: {body[:80]}")
                client.abort()

    def check_replay(self, client: Client, headers: dict[str, str], body: str) -> None:
        """A replayed message: after this client's since-id, in order, never twice (the coalescing's exactness)."""
        try:
            ident = json.loads(body)["id"]
        except (ValueError, KeyError, TypeError):
            self.problem(f"client {client.index}: unreadable MESSAGE {body[:60]!r}")
            return
        sub = headers.get("subscription", "")
        room = self.rooms[int(sub[1:])] if sub[1:].isdigit() and int(sub[1:]) < len(self.rooms) else "?"
        key = (client.index, room)
        last = self.last_seen.setdefault(key, self.since.get(str(client.index), {}).get(room, [0])[0])
        if ident <= last:
            self.problem(f"client {client.index} room {room}: id {ident} after {last} (duplicate or out of order)")
        self.last_seen[key] = ident
        self.counts[key] = self.counts.get(key, 0) + 1
        self.replayed += 1

    def check_complete(self, client: Client) -> None:
        """Every room's replay arrived before its RECEIPT: as many messages as are stored after the since-id."""
        for room, (_, expected) in self.since.get(str(client.index), {}).items():
            got = self.counts.get((client.index, room), 0)
            if got != expected:
                self.problem(f"client {client.index} room {room}: {got} replayed, {expected} stored after since-id")

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)
        self.errors["replay"] = self.errors.get("replay", 0) + 1

    def finished(self, client: Client) -> None:
        if client.index not in self.done_at:
            self.done_at[client.index] = time.monotonic() - self.started
            if len(self.done_at) >= self.expected:
                self.all_done.set()

    def failed(self, client: Client, why: str) -> None:
        key = why.split(":")[0][:40]
        self.errors[key] = self.errors.get(key, 0) + 1
        if len(self.problems) < 20:
            self.problems.append(f"client {client.index}: {why}")

    def lost(self, client: Client) -> None:
        if client.index in self.done_at and self.args.mode == "idle" and not self.ending:
            self.errors["lost-after-subscribed"] = self.errors.get("lost-after-subscribed", 0) + 1
        elif client.index not in self.done_at and self.args.mode == "storm" and not self.ending and not client.handled:
            # Closed before it was subscribed (e.g. the server's handshake timeout): counted, and the client
            # comes back after a jittered, growing delay, as the page does (static/js/chat.js RECONNECT_MS).
            client.handled = True
            self.closed_early += 1
            base = RECONNECT_S[min(client.attempt - 1, len(RECONNECT_S) - 1)]
            self.retry(client, base / 2 + random.random() * base / 2)  # noqa: S311  (jitter, not a secret)

    def retry(self, client: Client, delay: float) -> None:
        if client.attempt >= self.args.max_attempts:
            self.failed(client, "gave up: max attempts")
            return
        if time.monotonic() - self.started + delay > self.args.deadline:
            return  # would come back after the deadline: counted as not subscribed
        asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(self.connect(client)))

    # -- heart-beats: one loop for every connection (no timer per connection) -------------------------------
    async def heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_MS / 1000 / 2)
            for client in self.clients:
                if client.upgraded and not client.closed:
                    client.send_ws(b"\n")

    # -- the two modes --------------------------------------------------------------------------------------
    async def open_all(self, indices: range, *, spread: float) -> None:
        """Open these clients, their first attempts spread evenly over ``spread`` seconds."""
        for client in [Client(self, i) for i in indices]:
            self.clients.append(client)
        count = len(indices)
        first = len(self.clients) - count
        for k in range(count):
            client = self.clients[first + k]
            asyncio.get_running_loop().call_later(
                spread * k / max(count, 1), lambda c=client: asyncio.ensure_future(self.connect(c))
            )


async def storm(args: argparse.Namespace, tokens: list[str]) -> dict:
    run = Run(args, tokens)
    run.expected = args.clients
    beats = asyncio.ensure_future(run.heartbeats())
    await run.open_all(range(args.clients), spread=args.spread)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.all_done.wait(), timeout=args.deadline)
    elapsed = time.monotonic() - run.started
    # Replays still being received by clients that already got their receipts are counted on a short drain.
    await asyncio.sleep(1.0)
    beats.cancel()
    run.ending = True
    for client in run.clients:
        client.abort()
    times = sorted(run.done_at.values())
    return {
        "clients": args.clients,
        "subscribed": len(run.done_at),
        "failed": args.clients - len(run.done_at),
        "seconds_to_all_subscribed": round(times[-1], 2) if len(times) == args.clients else None,
        "p50_s": round(times[len(times) // 2], 2) if times else None,
        "p99_s": round(times[int(len(times) * 0.99) - 1], 2) if times else None,
        "elapsed_s": round(elapsed, 2),
        "busy_refusals": run.busy,
        "closed_before_subscribed": run.closed_early,
        "retry_after_max": max(run.retry_after, default=0),
        "replayed_messages": run.replayed,
        "errors": run.errors,
        "problems": run.problems,
        "phases_s": phase_times(run.phases),
        # How far each client's last attempt got by the end (all of them: "subscribe" = subscribed).
        "reached": {name: sum(1 for c in run.clients if len(c.stamps) > n + 1) for n, name in enumerate(PHASES)},
        "client_rss_kb": rss_kb(os.getpid()),
        "client_cpu_s": round(sum(os.times()[:2]), 2),
    }


async def idle(args: argparse.Namespace, tokens: list[str]) -> dict:
    run = Run(args, tokens)
    steps = [int(s) for s in args.steps.split(",")]
    beats = asyncio.ensure_future(run.heartbeats())
    points: list[dict[str, Any]] = []
    await asyncio.sleep(1.0)
    zero = rss_kb(args.server_pid)
    points.append({"connections": 0, "server_rss_kb": zero, "client_rss_kb": rss_kb(os.getpid())})
    opened = 0
    # Warm-up: the first connections also pay the server's one-time costs (modules imported on first use,
    # the database connection and worker thread, caches). They stay open and count in every step, but the
    # per-connection figure is measured from the RSS after them, the same way for every server.
    base, warm = zero, 0
    if args.warmup:
        run.expected = args.warmup
        await run.open_all(range(args.warmup), spread=args.warmup / args.open_rate)
        opened = args.warmup
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.all_done.wait(), timeout=args.deadline)
        await asyncio.sleep(args.hold)
        warm = sum(1 for c in run.clients if c.index in run.done_at and not c.closed)
        base = rss_kb(args.server_pid)
        points[0].update({"warmup_connections": warm, "warmup_server_rss_kb": base})
    for target in steps:
        run.expected = target
        run.all_done.clear()
        await run.open_all(range(opened, target), spread=(target - opened) / args.open_rate)
        opened = target
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.all_done.wait(), timeout=args.deadline)
        await asyncio.sleep(args.hold)  # heart-beats flow both ways (10 s) while the memory settles
        live = sum(1 for c in run.clients if c.index in run.done_at and not c.closed)
        rss = rss_kb(args.server_pid)
        points.append({"connections": live, "requested": target, "server_rss_kb": rss,
                       "client_rss_kb": rss_kb(os.getpid()),
                       "kb_per_connection": round((rss - base) / (live - warm), 2) if live > warm else None,
                       "kb_per_connection_from_zero": round((rss - zero) / live, 2) if live else None})  # fmt: skip
        sys.stderr.write(json.dumps(points[-1]) + "\n")
        if args.snapshot_dir:  # bench/memory_probe.py: the server snapshots its heap on SIGUSR1
            os.kill(args.server_pid, signal.SIGUSR1)
            done = Path(args.snapshot_dir) / f"snapshot-{len(points) - 1}.done"
            for _ in range(600):
                if done.exists():
                    break
                await asyncio.sleep(0.5)
    # A publish reaching every connection: one more client sends it.
    before = run.live_received
    publisher = run.clients[0]
    if run.bare:
        publisher.send_ws(frame("PUBLISH", {}, "hello"))
    else:
        publisher.send_ws(frame("SEND", {"destination": args.idle_destination, "receipt": "p"}, '{"hello": 1}'))
    deadline = time.monotonic() + 30
    live = points[-1]["connections"]
    while run.live_received - before < live and time.monotonic() < deadline:  # noqa: ASYNC110  (a bounded poll)
        await asyncio.sleep(0.2)
    beats.cancel()
    run.ending = True
    for client in run.clients:
        client.abort()
    for k in range(1, len(points) - 1):
        a, b = points[k], points[k + 1]
        if b["connections"] > a["connections"]:
            b["slope_kb_per_connection"] = round(
                (b["server_rss_kb"] - a["server_rss_kb"]) / (b["connections"] - a["connections"]), 2
            )
    return {"points": points, "publish_reached": run.live_received - before, "errors": run.errors,
            "problems": run.problems, "busy_refusals": run.busy}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["storm", "idle"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens", default="", help="one JWT per line (client i uses line i)")
    parser.add_argument("--bare", action="store_true", help="the server is the bare websockets echo server")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rooms", default="")
    parser.add_argument("--since-file", default="", help='JSON {"<client>": {"<room>": since-id}}')
    parser.add_argument("--spread", type=float, default=2.0, help="seconds over which the first attempts start")
    parser.add_argument("--deadline", type=float, default=30.0)
    parser.add_argument("--max-attempts", type=int, default=50)
    parser.add_argument(
        "--until",
        choices=["handshake", "connect", "subscribe"],
        default="subscribe",
        help="storm: a client is done after this phase (profiling one phase's server cost)",
    )
    parser.add_argument("--steps", default="2000,10000,18000")
    parser.add_argument("--open-rate", type=float, default=400.0, help="idle: connections opened per second")
    parser.add_argument("--hold", type=float, default=12.0, help="idle: seconds held at each step")
    parser.add_argument("--warmup", type=int, default=0,
                        help="idle: connections opened (and kept) before the baseline RSS is read")  # fmt: skip
    parser.add_argument("--idle-destination", default="/topic/idle")
    parser.add_argument("--server-pid", type=int, default=0)
    parser.add_argument("--snapshot-dir", default="", help="idle: SIGUSR1 the server after each step, wait for it")
    args = parser.parse_args(argv)
    tokens = Path(args.tokens).read_text().split() if args.tokens else []
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(storm(args, tokens) if args.mode == "storm" else idle(args, tokens))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
