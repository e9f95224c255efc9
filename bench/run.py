"""``make bench``: start every server by PID on 127.0.0.1, run the scenarios with bench/loadgen.mjs, write the results.

Servers, side by side in one run: the project on daphne, the project on uvicorn (websockets-sansio,
uvloop, httptools), the plain Channels ``group_send`` consumer of ``bench/baseline`` on daphne, and
RabbitMQ Web-STOMP (Debian's ``rabbitmq-server``) when it is installed. Results go to
``bench/results/``: ``results.json`` (everything the generator reported), ``results.md`` (the table, with
ratios to the baseline and to RabbitMQ) and ``results.png`` (deliveries/s and p99 per scenario).

    python bench/run.py              # the full run (about 15 minutes)
    python bench/run.py --quick      # a smoke test: small counts, short steps (about a minute)
    python bench/run.py --servers daphne,uvicorn --scenarios fanout100_max,rooms250
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "var" / "bench"
RESULTS = REPO / "bench" / "results"
LOADGEN = REPO / "bench" / "loadgen.mjs"
sys.path.insert(0, str(REPO))

from scripts.processes import free_port, stop, wait_port  # noqa: E402

P99_BOUND_MS = 50
SERVERS = ("baseline", "rabbitmq", "daphne", "uvicorn")
SERVER_LABELS = {
    "baseline": "plain Channels consumer (daphne)",
    "rabbitmq": "RabbitMQ Web-STOMP",
    "daphne": "project, daphne",
    "uvicorn": "project, uvicorn",
}
# Limits the benchmark runs the project with (printed before the run). The defaults of every STOMP_*
# limit already fit these scenarios; a longer token lifetime keeps the JWTs valid for the whole run.
PROJECT_ENV = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SITE_ORIGIN": "http://127.0.0.1:8000",
    "FRONTEND_ORIGINS": "http://127.0.0.1:*",
    "JWT_ACCESS_LIFETIME": "86400",
    "LOG_LEVEL": "WARNING",
    "AUTH_THROTTLE_RATE": "100000/min",
    # The per-connection SEND token bucket stays on (its cost is part of the measurement), but far above
    # what one benchmark publisher sends: the default (500/s) would cap every max-rate scenario.
    "STOMP_SEND_RATE": "1000000",
    "STOMP_SEND_BURST": "1000000",
    "STOMP_USER_SEND_RATE": "0",  # per-user budget off too (issue 16): one max-rate publisher is one user
}

logger = logging.getLogger("bench")


# -- scenarios ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    args: tuple[str, ...]
    kind: str = "max"  # max | sweep | idle | chat
    connections: int = 0
    fanout: int = 1  # deliveries per message in a sweep
    project_only: bool = False
    two_processes: bool = False


def scenarios(quick: bool) -> list[Scenario]:
    """Every scenario, with counts and durations cut down in quick mode."""
    if quick:
        step = ("--duration", "1", "--warmup", "0.5", "--drain", "3", "--pause", "0.3")
        return [
            Scenario("fanout100_max", "fan-out 1→20, max", ("--subs", "20", "--pubs", "1", *step), connections=21),
            Scenario(
                "fanout100_sweep",
                "fan-out 1→20, paced",
                ("--subs", "20", "--pubs", "1", "--rate", "50,100", "--stop-p99", str(P99_BOUND_MS), *step),
                kind="sweep",
                connections=21,
                fanout=20,
            ),
            Scenario(
                "rooms250",
                "10 rooms of 2",
                (
                    "--mode",
                    "rooms",
                    "--rooms",
                    "10",
                    "--room-size",
                    "2",
                    "--sub-dest",
                    "/topic/benchroom.{room}",
                    "--window",
                    "2",
                    *step,
                ),
                connections=20,
            ),
            Scenario(
                "idle2000",
                "100 idle connections",
                (
                    "--mode",
                    "idle",
                    "--idle",
                    "100",
                    "--idle-steps",
                    "2",
                    "--hold",
                    "1",
                    "--sub-dest",
                    "/topic/idle.{room}",
                ),
                kind="idle",
                connections=100,
            ),
            Scenario(
                "chat",
                "chat: 2 rooms of 3, persisted",
                (
                    "--mode",
                    "rooms",
                    "--rooms",
                    "2",
                    "--room-size",
                    "3",
                    "--sub-dest",
                    "/topic/rooms.bench-{room}",
                    "--pub-dest",
                    "/app/rooms.bench-{room}",
                    "--window",
                    "1",
                    *step,
                ),
                kind="chat",
                connections=6,
                project_only=True,
            ),
        ]
    step = ("--duration", "5", "--warmup", "2", "--drain", "5", "--pause", "1")
    sweep = ("--duration", "4", "--warmup", "1", "--drain", "3", "--pause", "1", "--stop-p99", str(P99_BOUND_MS))
    return [
        Scenario(
            "fanout100_max", "fan-out 1→100, max deliveries/s", ("--subs", "100", "--pubs", "1", *step), connections=101
        ),
        Scenario(
            "fanout100_sweep",
            "fan-out 1→100, highest rate with p99 ≤ 50 ms and no loss",
            (
                "--subs",
                "100",
                "--pubs",
                "1",
                "--rate",
                "5,25,50,100,150,200,300,400,500,600,800,1000,1200,1500,2000",
                *sweep,
            ),
            kind="sweep",
            connections=101,
            fanout=100,
        ),
        Scenario(
            "fanout1000_max",
            "fan-out 1→1000, max deliveries/s",
            ("--subs", "1000", "--pubs", "1", *step),
            connections=1001,
        ),
        Scenario(
            "fanout1000_sweep",
            "fan-out 1→1000, highest rate with p99 ≤ 50 ms and no loss",
            ("--subs", "1000", "--pubs", "1", "--rate", "1,5,10,20,30,50,75,100,150,200", *sweep),
            kind="sweep",
            connections=1001,
            fanout=1000,
        ),
        Scenario(
            "rooms250",
            "250 two-user rooms, max deliveries/s",
            (
                "--mode",
                "rooms",
                "--rooms",
                "250",
                "--room-size",
                "2",
                "--sub-dest",
                "/topic/benchroom.{room}",
                "--window",
                "2",
                *step,
            ),
            connections=500,
        ),
        Scenario(
            "idle2000",
            "2,000 idle connections (JWT + 1 subscription), RSS per connection",
            (
                "--mode",
                "idle",
                "--idle",
                "2000",
                "--idle-steps",
                "4",
                "--hold",
                "5",
                "--sub-dest",
                "/topic/idle.{room}",
            ),
            kind="idle",
            connections=2000,
        ),
        Scenario(
            "chat",
            "chat: 20 rooms of 5 via /app/rooms.<slug>, persisted, max messages/s",
            (
                "--mode",
                "rooms",
                "--rooms",
                "20",
                "--room-size",
                "5",
                "--sub-dest",
                "/topic/rooms.bench-{room}",
                "--pub-dest",
                "/app/rooms.bench-{room}",
                "--window",
                "1",
                *step,
            ),
            kind="chat",
            connections=100,
            project_only=True,
        ),
        Scenario(
            "fanout1000_redis2",
            "fan-out 1→1000, max, two processes sharing Redis",
            ("--subs", "1000", "--pubs", "1", *step),
            connections=1001,
            project_only=True,
            two_processes=True,
        ),
    ]


# -- processes ---------------------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    url: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    cpu_pids: list[int] = field(default_factory=list)  # processes whose CPU and RSS count as the server's

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop(process)


def start_python_server(kind: str, env: dict[str, str], log: Path, app: str = "chatproject.asgi:application"):
    port = free_port()
    if kind == "uvicorn":
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            "websockets-sansio",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
            app,
        ]
    else:
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", app]
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_port(port, process, timeout=60, what=f"{kind} ({app})")
    return process, port


def start_redis() -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(port, process, timeout=20, what="redis-server")
    return process, port


def rabbitmq_available() -> bool:
    return Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() and shutil.which("epmd") is not None


def start_rabbitmq() -> Server:
    """RabbitMQ with rabbitmq_web_stomp, every listener (epmd and distribution too) on 127.0.0.1 only."""
    base = WORK / "rabbitmq"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    amqp, stomp_port, web, epmd_port, dist = (free_port() for _ in range(5))
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{amqp}\nstomp.listeners.tcp.1 = 127.0.0.1:{stomp_port}\n"
        f"web_stomp.tcp.ip = 127.0.0.1\nweb_stomp.tcp.port = {web}\nloopback_users = none\n"
    )
    (base / "enabled_plugins").write_text("[rabbitmq_web_stomp].\n")
    env = {**os.environ, "HOME": str(base), "ERL_EPMD_PORT": str(epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1"}
    log = open(base / "server.log", "ab")  # noqa: SIM115 - closed with the process
    epmd = subprocess.Popen(
        ["epmd", "-address", "127.0.0.1", "-port", str(epmd_port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    env.update(
        RUNNING_UNDER_SYSTEMD="1",  # exec the Erlang VM itself: the PID we hold is beam.smp
        RABBITMQ_NODENAME=f"bench{epmd_port}@localhost",
        RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
        RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
        RABBITMQ_LOG_BASE=str(base / "log"),
        RABBITMQ_LOGS="-",
        RABBITMQ_DIST_PORT=str(dist),
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
    )
    beam = subprocess.Popen(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server("rabbitmq", f"ws://127.0.0.1:{web}/ws", [epmd, beam], [beam.pid])
    try:
        wait_port(web, beam, timeout=90, what="rabbitmq-server")
        # The Web-STOMP port opens before the broker has booted; connections before then are refused.
        deadline = time.monotonic() + 90
        while b"Server startup complete" not in (base / "server.log").read_bytes():
            if time.monotonic() > deadline or beam.poll() is not None:
                raise RuntimeError("rabbitmq-server did not complete its startup within 90 s")
            time.sleep(0.2)
    except Exception:
        server.stop()
        raise
    return server


def project_env(database: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **PROJECT_ENV, "DJANGO_SETTINGS_MODULE": "chatproject.settings"}
    env.pop("REDIS_URL", None)
    env.update(DATABASE_URL=f"sqlite:///{database}", SECRET_KEY=bench_secret(), PYTHONUNBUFFERED="1", **extra)
    return env


_secret: str | None = None


def bench_secret() -> str:
    global _secret
    if _secret is None:
        _secret = secrets.token_urlsafe(48)
    return _secret


def start_server(name: str, database: Path, *, redis_processes: int = 0) -> Server:
    log = WORK / f"{name}.log"
    if name == "rabbitmq":
        return start_rabbitmq()
    if name == "baseline":
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.baseline.settings", "PYTHONPATH": str(REPO)}
        process, port = start_python_server("daphne", env, log, "bench.baseline.asgi:application")
        return Server(name, f"ws://127.0.0.1:{port}/ws/websocket", [process], [process.pid])
    if redis_processes:
        redis, redis_port = start_redis()
        server = Server(name, "", [redis], [redis.pid])
        env = project_env(database, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0")
        urls = []
        for _ in range(redis_processes):
            process, port = start_python_server(name, env, log)
            server.processes.append(process)
            server.cpu_pids.append(process.pid)
            urls.append(f"ws://127.0.0.1:{port}/ws/websocket")
        server.url = ",".join(urls)
        return server
    process, port = start_python_server(name, project_env(database), log)
    return Server(name, f"ws://127.0.0.1:{port}/ws/websocket", [process], [process.pid])


# -- the project's data: users, tokens, chat rooms -------------------------------------------------------
def prepare_database(database: Path, users: int, chat_rooms: int, room_size: int) -> tuple[Path, dict]:
    """Migrate a fresh SQLite file, create one user per connection, their JWTs, and the chat rooms."""
    if database.exists():
        database.unlink()
    env = project_env(database)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True)
    os.environ.update(
        {
            k: v
            for k, v in env.items()
            if k not in os.environ or k in PROJECT_ENV or k in ("DATABASE_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE")
        }
    )
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    from chat.models import Membership, Room

    user_model = get_user_model()
    # One user per connection, so no per-user limit is shared between connections. No password
    # hashing: the benchmark authenticates with JWTs only.
    user_model.objects.bulk_create(
        [user_model(username=f"bench{i}", password="!") for i in range(users)], batch_size=500
    )
    people = list(user_model.objects.filter(username__startswith="bench").order_by("id"))
    tokens = WORK / "tokens.txt"
    tokens.write_text("".join(f"{AccessToken.for_user(user)}\n" for user in people))
    for number in range(chat_rooms):
        members = people[number * room_size : (number + 1) * room_size]
        room = Room.objects.create(slug=f"bench-{number}", name=f"bench {number}", creator=members[0])
        Membership.objects.bulk_create(
            [
                Membership(room=room, user=user, role=Membership.Role.OWNER if k == 0 else Membership.Role.MEMBER)
                for k, user in enumerate(members)
            ]
        )
    limits = {
        name: getattr(settings, name)
        for name in dir(settings)
        if name.startswith(("STOMP_", "CHAT_", "SOCKJS_")) or "RATE" in name or "LIMIT" in name
    }
    limits.pop("STOMP_DESTINATION_RULES", None)
    return tokens, limits


# -- running -------------------------------------------------------------------------------------------------
def run_loadgen(
    scenario: Scenario,
    server: Server,
    tokens: Path | None,
    label: str,
    timeout: float,
    profile: Path | None = None,
    profile_seconds: int = 6,
    profile_delay: float = 4,
) -> dict:
    argv = [
        "node",
        str(LOADGEN),
        "--url",
        server.url,
        "--label",
        label,
        "--max-time",
        str(int(timeout)),
        "--server-pid",
        ",".join(str(pid) for pid in server.cpu_pids),
        *scenario.args,
    ]
    if server.name == "rabbitmq":
        argv += [
            "--login",
            "guest",
            "--passcode",
            "guest",
            "--sub-dest",
            dict(zip(scenario.args, scenario.args[1:], strict=False)).get("--sub-dest", "/topic/bench"),
        ]
    elif tokens is not None:
        argv += ["--tokens", str(tokens)]
    if scenario.kind == "chat":
        argv += ["--content-type", "text/plain"]
    env = {**os.environ, "NODE_PATH": str(REPO / "node_modules")}
    profiler = None
    if profile is not None and server.name in ("daphne", "uvicorn"):
        # py-spy samples the (last started) server process while the load runs; collapsed stacks.
        path = profile / f"{label.replace('/', '-')}.txt"
        # It starts after the connections are up (delay), so the profile shows the steady state.
        profiler = subprocess.Popen(
            [
                "sh",
                "-c",
                'sleep "$0" && exec "$@"',
                str(profile_delay),
                shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--format",
                "raw",
                "--rate",
                "250",
                "--nonblocking",
                "--duration",
                str(profile_seconds),
                "-o",
                str(path),
                "-p",
                str(server.cpu_pids[-1]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        done = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, timeout=timeout + 30, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"loadgen did not finish within {timeout + 30:g} s"}
    finally:
        if profiler is not None:
            try:
                profiler.wait(timeout=profile_delay + profile_seconds + 30)
            except subprocess.TimeoutExpired:
                stop(profiler)
    try:
        return json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": f"loadgen exited with {done.returncode} and no result"}


def summarise(scenario: Scenario, result: dict) -> dict:
    """The figures the table shows for one scenario on one server."""
    if result.get("error") and not result.get("steps") and not result.get("idle"):
        return {"error": result["error"][:200]}
    if scenario.kind == "idle":
        idle = result.get("idle") or {}
        return {
            "kb_per_connection": idle.get("kb_per_connection"),
            "open": idle.get("open_at_end"),
            "requested": idle.get("requested"),
        }
    steps = result.get("steps") or []
    if not steps:
        return {"error": (result.get("error") or "no steps")[:200]}
    if scenario.kind == "sweep":
        last_attempts = {s["rate"]: s for s in steps}  # a step that failed and then passed counts as passed
        best = None
        for s in last_attempts.values():  # the sweep stops at the first step over the bound; the one before counts
            p99 = s["latency_ms"]["p99"]
            if s["lost"] or p99 is None or p99 > P99_BOUND_MS or s["send_rate"] < 0.9 * s["rate"]:
                break
            best = s
        return {
            "deliveries_per_s": round(best["rate"] * scenario.fanout) if best else 0,
            "p99_ms": best["latency_ms"]["p99"] if best else None,
            "lost": sum(s["lost"] for s in steps),
            "extra": sum(s["extra"] for s in steps),
            "out_of_order": sum(s["out_of_order"] for s in steps),
            "stopped": result.get("stopped"),
            "steps": len(steps),
        }
    step = steps[-1]
    return {
        "deliveries_per_s": step["deliveries_per_s"],
        "p99_ms": step["latency_ms"]["p99"],
        "p50_ms": step["latency_ms"]["p50"],
        "lost": step["lost"],
        "extra": step["extra"],
        "out_of_order": step["out_of_order"],
        "messages_per_s": step["send_rate"],
        "per_server_cpu_s": step["deliveries_per_server_cpu_s"],
        "server_cores": step["usage"]["server_cores"],
        "loadgen_cores": step["usage"]["client_cores"],
        "closes": result.get("unexpected_closes", 0),
    }


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextlib.contextmanager
def running(name: str, database: Path, **kwargs) -> Iterator[Server]:
    server = start_server(name, database, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    global WORK
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts and short steps (a smoke test)")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated among {', '.join(SERVERS)}")
    parser.add_argument("--scenarios", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    parser.add_argument(
        "--work", default=str(REPO / "var" / "bench"), help="scratch directory (database, tokens, server logs)"
    )
    parser.add_argument("--profile", default="", help="directory for py-spy profiles of the project servers")
    parser.add_argument("--max-time", type=float, default=2400, help="stop starting scenarios after this many s")
    args = parser.parse_args(argv)
    WORK = Path(args.work)
    logging.basicConfig(level=logging.INFO, format="[bench %(asctime)s] %(message)s", datefmt="%H:%M:%S")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 20000), hard), hard))  # inherited by servers
    WORK.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profile = Path(args.profile) if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in scenarios(args.quick) if not args.scenarios or s.name in args.scenarios.split(",")]
    servers = [s for s in args.servers.split(",") if s]
    if "rabbitmq" in servers and not rabbitmq_available():
        logger.warning("RabbitMQ is not installed (apt-get install rabbitmq-server): its column stays empty")
        servers.remove("rabbitmq")
    users = max(s.connections for s in chosen) + 1
    chat = next((s for s in chosen if s.kind == "chat"), None)
    chat_rooms, room_size = (2, 3) if args.quick else (20, 5)
    database = WORK / "bench.sqlite3"
    logger.info("preparing %s: %d users with JWTs, %d chat rooms of %d", database, users, chat_rooms, room_size)
    tokens, limits = prepare_database(database, users, chat_rooms if chat else 0, room_size)
    logger.info("limits of the project servers: %s", json.dumps(limits, default=str, sort_keys=True))
    started = time.monotonic()
    report: dict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": args.quick,
        "load_average_before": load_average(),
        "cpus": os.cpu_count(),
        "limits": limits,
        "servers": servers,
        "results": {},
        "raw": {},
    }
    for name in servers:
        applicable = [s for s in chosen if not (s.project_only and name in ("baseline", "rabbitmq"))]
        if not applicable:
            continue
        logger.info("== %s (load average %s)", SERVER_LABELS[name], load_average())
        for scenario in applicable:
            if time.monotonic() - started > args.max_time:
                logger.warning("--max-time reached: skipping %s on %s", scenario.name, name)
                continue
            if scenario.two_processes and name == "uvicorn":
                context = running(name, database, redis_processes=2)
            elif scenario.two_processes:
                continue
            else:
                context = None
            if context is None:
                # A fresh server per scenario: no scenario inherits another's backlog or memory.
                context = running(name, database)
            with context as server:
                logger.info("%s on %s (%s)", scenario.name, name, server.url)
                timeout = 120 if args.quick else 400
                raw = run_loadgen(
                    scenario,
                    server,
                    None if name in ("baseline", "rabbitmq") else tokens,
                    f"{name}/{scenario.name}",
                    timeout,
                    profile,
                )
            report["raw"].setdefault(name, {})[scenario.name] = raw
            summary = summarise(scenario, raw)
            report["results"].setdefault(name, {})[scenario.name] = summary
            logger.info("%s on %s: %s", scenario.name, name, json.dumps(summary))
    report["load_average_after"] = load_average()
    report["seconds"] = round(time.monotonic() - started)
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    from bench.report import write_chart, write_table

    table = write_table(report, chosen, out / "results.md")
    write_chart(report, chosen, out / "results.png")
    print(table)
    if not args.scenarios or "abuse" in args.scenarios.split(","):  # issue 16's scenarios: bench/abuse.py
        from bench.abuse import main as abuse_main

        project = ",".join(s for s in servers if s in ("daphne", "uvicorn"))
        if project:
            abuse_main(["--out", str(out), "--work", str(WORK), "--servers", project, *(["--quick"] * args.quick)])
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
