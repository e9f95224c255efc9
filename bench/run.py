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
import functools
import json
import logging
import os
import resource
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "var" / "bench"
RESULTS = REPO / "bench" / "results"
LOADGEN = REPO / "bench" / "loadgen.mjs"
sys.path.insert(0, str(REPO))

from bench import chat  # noqa: E402
from scripts import postgres  # noqa: E402
from scripts.processes import free_port, stop, wait_port  # noqa: E402

P99_BOUND_MS = 50
SERVERS = ("baseline", "rabbitmq", "daphne", "uvicorn")
SERVER_LABELS = {
    "baseline": "plain Channels consumer (daphne)",
    "rabbitmq": "RabbitMQ Web-STOMP",
    "daphne": "project, daphne",
    "uvicorn": "project, uvicorn",
}
# How the benchmarks run the project (bench/abuse.py too): production settings on loopback, and a token
# lifetime that keeps the JWTs valid for the whole run.
SERVER_ENV = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SITE_ORIGIN": "http://127.0.0.1:8000",
    "FRONTEND_ORIGINS": "http://127.0.0.1:*",
    "JWT_ACCESS_LIFETIME": "86400",
    "LOG_LEVEL": "WARNING",
    "AUTH_THROTTLE_RATE": "100000/min",
}
# Limits the benchmark runs the project with (printed before the run). The defaults of every other STOMP_*
# limit already fit these scenarios.
PROJECT_ENV = {
    **SERVER_ENV,
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
    kind: str = "max"  # max | sweep | idle | chat (bench/chat.py runs the chat scenario)
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


def start_python_server(
    kind: str, env: dict[str, str], log: Path, app: str = "chatproject.asgi:application", root: Path = REPO
):
    """The project the way production runs it: ``python -m chatproject.daphne_server`` (daphne with the
    write-backpressure adapter, as the systemd unit) and uvicorn with ``chatproject.uvicorn_ws:SansIOProtocol``;
    plain daphne / ``websockets-sansio`` for the Channels baseline and for an older tree (--compare) that
    lacks those modules."""
    port = free_port()
    project = app == "chatproject.asgi:application"
    if kind == "uvicorn":
        ws = "websockets-sansio"
        if project and (root / "chatproject" / "uvicorn_ws.py").exists():
            ws = "chatproject.uvicorn_ws:SansIOProtocol"
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            ws,
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
        daphne = "daphne"
        if project and (root / "chatproject" / "daphne_server.py").exists():
            daphne = "chatproject.daphne_server"
        argv = [sys.executable, "-m", daphne, "-b", "127.0.0.1", "-p", str(port), "-v", "0", app]
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
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


def project_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env.update(PROJECT_ENV, DJANGO_SETTINGS_MODULE="chatproject.settings")
    env.pop("REDIS_URL", None)
    env.update(DATABASE_URL=database_url, SECRET_KEY=bench_secret(), PYTHONUNBUFFERED="1", **extra)
    return env


_secret: str | None = None


def bench_secret() -> str:
    global _secret
    if _secret is None:
        _secret = secrets.token_urlsafe(48)
    return _secret


def start_server(
    name: str, database: str, *, redis_processes: int = 0, root: Path = REPO, env: dict[str, str] | None = None
) -> Server:
    """``database``: the project's DATABASE_URL; ``root``: the project's tree (another revision's, --compare);
    ``env``: more of the project's environment (e.g. ``CHAT_WRITER_PROCESS``)."""
    env = env or {}
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
        worker_env = project_env(database, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", **env)
        urls = []
        for _ in range(redis_processes):
            process, port = start_python_server(name, worker_env, log, root=root)
            server.processes.append(process)
            server.cpu_pids.append(process.pid)
            urls.append(f"ws://127.0.0.1:{port}/ws/websocket")
        server.url = ",".join(urls)
        return server
    process, port = start_python_server(name, project_env(database, **env), log, root=root)
    return Server(name, f"ws://127.0.0.1:{port}/ws/websocket", [process], [process.pid])


# -- the project's data: users, tokens, chat rooms -------------------------------------------------------
def prepare_database(database_url: str, users: int, chat_rooms: int, room_size: int, tokens: Path) -> dict:
    """Migrate, one user and JWT per connection (written to ``tokens``), the chat rooms: bench/prepare.py in its
    own process, so that each database gets its own settings. Returns the project's limits."""
    argv = [sys.executable, "-m", "bench.prepare", "--users", str(users), "--rooms", str(chat_rooms),
            "--room-size", str(room_size), "--tokens", str(tokens)]  # fmt: skip
    done = subprocess.run(
        argv, cwd=REPO, env=project_env(database_url), capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench/prepare.py failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sqlite_url(path: Path) -> str:
    path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


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
def running(name: str, database: str, **kwargs) -> Iterator[Server]:
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
    parser.add_argument(
        "--scenarios", default="", help="comma-separated scenario names, 'chat' for the chat scenario (default: all)"
    )
    parser.add_argument(
        "--databases", default=",".join(chat.DATABASES), help="the chat scenario's databases: sqlite,postgres"
    )
    parser.add_argument(
        "--chat-loads", default="max,paced", help="the chat scenario's loads: max,paced (max alone: a short run)"
    )
    parser.add_argument(
        "--chat-rates", default="", help="the paced chat sweep: messages/s, comma-separated (default 5 to 6000)"
    )
    parser.add_argument(
        "--chat-window",
        type=int,
        default=None,
        help="the chat max load: messages per connection sent and not yet RECEIPTed and received by its room "
        "(default 2)",
    )
    parser.add_argument(
        "--chat-workers",
        type=int,
        default=1,
        help="the chat scenario's server processes (2: the production recipe on this 2-core box, over one Redis; "
        "connections spread over them)",
    )
    parser.add_argument(
        "--chat-writer",
        choices=["thread", "process"],
        default="thread",
        help="the chat writer's batches in a thread of the server (default) or a process of their own "
        "(CHAT_WRITER_PROCESS=1); the server's CPU counts its child processes",
    )
    parser.add_argument(
        "--pg-fsync", choices=["on", "off"], default="on", help="the chat PostgreSQL's fsync (on: production)"
    )
    parser.add_argument(
        "--compare",
        default="",
        help="a git revision: run every scenario (pub/sub and chat) on the project servers of this tree and of "
        "REV (started from REV's own checkout), alternated round by round (--rounds each), and report the "
        "ratios this/REV with a 'slower' flag",
    )
    parser.add_argument(
        "--compare-only",
        action="store_true",
        help="with --compare: only the comparison (not the baseline/RabbitMQ columns, abuse or metrics cost)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="--compare: runs per revision and scenario")
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    parser.add_argument(
        "--work", default=str(REPO / "var" / "bench"), help="scratch directory (database, tokens, server logs)"
    )
    parser.add_argument("--profile", default="", help="directory for py-spy profiles of the project servers")
    parser.add_argument("--max-time", type=float, default=2400, help="stop starting scenarios after this many s")
    args = parser.parse_args(argv)
    for option, value in (("--chat-workers", args.chat_workers), ("--chat-window", args.chat_window)):
        if value is not None and value < 1:
            parser.error(f"{option}: at least 1")
    WORK = Path(args.work).resolve()
    logging.basicConfig(level=logging.INFO, format="[bench %(asctime)s] %(message)s", datefmt="%H:%M:%S")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 20000), hard), hard))  # inherited by servers
    WORK.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profile = Path(args.profile) if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    wanted = [name for name in args.scenarios.split(",") if name]
    chosen = [s for s in scenarios(args.quick) if not wanted or s.name in wanted]
    run_chat = not wanted or "chat" in wanted
    servers = [s for s in args.servers.split(",") if s]
    if "rabbitmq" in servers and not rabbitmq_available():
        logger.warning("RabbitMQ is not installed (apt-get install rabbitmq-server): its column stays empty")
        servers.remove("rabbitmq")
    started = time.monotonic()
    report: dict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": args.quick,
        "load_average_before": load_average(),
        "cpus": os.cpu_count(),
        "limits": {},
        "servers": servers,
        "results": {},
        "raw": {},
    }
    timeout = 120 if args.quick else 400
    if args.compare_only and not args.compare:
        raise SystemExit("--compare-only needs --compare REV")
    if chosen and not args.compare_only:
        database = sqlite_url(WORK / "bench.sqlite3")
        users = max(s.connections for s in chosen) + 1
        logger.info("preparing %s: %d users with JWTs", database, users)
        tokens = WORK / "tokens.txt"
        report["limits"] = prepare_database(database, users, 0, 0, tokens)
        logger.info("limits of the project servers: %s", json.dumps(report["limits"], default=str, sort_keys=True))
    for name in servers if chosen and not args.compare_only else []:
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
    chat_servers = [s for s in servers if s in ("daphne", "uvicorn")]
    if args.compare and chat_servers:
        report["compare"] = compare_run(args, chosen, chat_servers, run_chat, started, timeout)
        report["limits"] = report["limits"] or report["compare"]["limits"]
    if run_chat and chat_servers and not args.compare_only:
        report["chat"] = chat_run(args, chat_servers, started)
        report["limits"] = report["limits"] or report["chat"].pop("limits", {})
    report["load_average_after"] = load_average()
    report["seconds"] = round(time.monotonic() - started)
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    from bench.report import write_chart, write_chat_chart, write_compare_chart, write_table

    table = write_table(report, chosen, out / "results.md")
    if chosen and report["results"]:
        write_chart(report, chosen, out / "results.png")
    if report.get("chat"):
        write_chat_chart(report, out / "chat.png")
    if report.get("compare", {}).get("figures"):
        write_compare_chart(report["compare"], out / "compare.png")
    print(table)
    if args.compare_only:
        return 0
    if not args.scenarios or "abuse" in args.scenarios.split(","):  # issue 16's scenarios: bench/abuse.py
        from bench.abuse import main as abuse_main

        project = ",".join(s for s in servers if s in ("daphne", "uvicorn"))
        if project:
            abuse_main(["--out", str(out), "--work", str(WORK), "--servers", project, *(["--quick"] * args.quick)])
    # issue 21: bench/search.py, whose figures are PostgreSQL's (1,000,000 messages): only when it is chosen.
    if (not args.scenarios or "search" in args.scenarios.split(",")) and "postgres" in args.databases.split(","):
        from bench.search import main as search_main

        search_main(["--out", str(out), "--work", str(WORK), *(["--quick"] * args.quick)])
    if not args.scenarios or "upload_rss" in args.scenarios.split(","):  # issue 21: bench/upload_rss.py
        from bench.upload_rss import main as upload_rss_main

        project = ",".join(s for s in servers if s in ("daphne", "uvicorn"))
        if project:
            upload_rss_main(["--out", str(out), "--work", str(WORK), "--servers", project, *(["--quick"] * args.quick)])
    # issue 23: bench/cluster.py (starts its own Redis Cluster; a few minutes, so in --quick only when named)
    if (not args.scenarios and not args.quick) or "cluster" in args.scenarios.split(","):
        from bench.cluster import main as cluster_main

        cluster_args = ["--out", str(out), "--work", str(WORK / "cluster"), *(["--quick"] * args.quick)]
        if "uvicorn" not in servers and "daphne" in servers:
            cluster_args += ["--server", "daphne"]
        cluster_main(cluster_args)
    storm_parts = [p for p in ("idle_memory", "storm", "probe") if p in args.scenarios.split(",")]
    # issue 23: bench/storm.py (idle memory beside a bare server, the storm on its own PostgreSQL; minutes, so
    # in --quick only when named, as cluster)
    if (not args.scenarios and not args.quick) or storm_parts:
        from bench.storm import main as storm_main

        project = ",".join(s for s in servers if s in ("daphne", "uvicorn"))
        if project:
            only = ",".join(storm_parts or ["idle_memory", "storm"])
            # The storm on two workers, the clients spread over them: the deployment of this 2-core machine
            # (README, workers per core); one worker cannot take 10,000 clients in 30 s here.
            storm_main(["--out", str(out), "--work", str(WORK), "--servers", project, "--only", only,
                        "--workers", "2", *(["--quick"] * args.quick)])  # fmt: skip
    if not args.scenarios or "metrics_cost" in args.scenarios.split(","):  # issue 22: bench/metrics_cost.py
        from bench.metrics_cost import main as metrics_cost_main

        metrics_cost_main(["--out", str(out), *(["--quick"] * args.quick)])
    return 0


def checkout(rev: str, work: Path) -> tuple[Path, str]:
    """``git archive`` of ``rev`` into a scratch folder (no worktree is registered); returns (folder, sha)."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    tree = work / f"compare-{sha[:12]}"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", "--format=tar", sha], cwd=REPO, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True, timeout=300)
    if archive.wait(timeout=60) != 0:
        raise RuntimeError(f"git archive {sha} failed")
    return tree, sha


@dataclass(frozen=True)
class CompareItem:
    """One figure --compare measures on both trees: a pub/sub scenario on one server, or a chat load on one
    database and server. ``load(root, label)`` starts the server from ``root`` and returns its summary."""

    key: str
    title: str
    kind: str  # max | sweep | idle | chat-max | chat-paced
    load: Callable[[Path, str], dict]


def compare_items(
    args: argparse.Namespace, stack: contextlib.ExitStack, chosen: list[Scenario], servers: list[str],
    run_chat: bool, trees: dict[str, Path], timeout: float, limits: dict,
) -> list[CompareItem]:  # fmt: skip
    """Every scenario ``make bench`` measures throughput in (pub/sub incl. the two-process Redis one on
    uvicorn, chat on each --databases), prepared once: one database per kind, migrated by each tree's own
    migrations (forward only: a tree ignores migrations it does not know), shared by both trees. ``limits``
    gets the project's limits (this tree's)."""
    items: list[CompareItem] = []
    if chosen:
        pubsub_url = sqlite_url(WORK / "compare.sqlite3")
        pubsub_tokens = WORK / "compare-tokens.txt"
        limits.update(prepare_database(pubsub_url, max(s.connections for s in chosen) + 1, 0, 0, pubsub_tokens))
        migrate_trees(trees, pubsub_url)
        for scenario in chosen:
            for name in servers:
                if scenario.two_processes and name != "uvicorn":
                    continue

                def load(root: Path, label: str, scenario=scenario, name=name) -> dict:
                    kwargs = {"redis_processes": 2} if scenario.two_processes else {}
                    with running(name, pubsub_url, root=root, **kwargs) as server:
                        raw = run_loadgen(scenario, server, pubsub_tokens, f"{label}/{name}/{scenario.name}", timeout)
                    return summarise(scenario, raw)

                items.append(CompareItem(f"{scenario.name}/{name}", f"{scenario.title}, {name}", scenario.kind, load))
    if not run_chat:
        return items
    cfg = chat_config(args)
    for db_name in [n for n in args.databases.split(",") if n]:
        if db_name == "sqlite":
            path = WORK / "compare-chat.sqlite3"
            database = chat.Database(db_name, sqlite_url(path), path)
        else:
            pg_root = WORK / "compare-pg"
            shutil.rmtree(pg_root, ignore_errors=True)
            cluster = postgres.start(pg_root, settings={"fsync": args.pg_fsync})
            stack.callback(cluster.stop)
            database = chat.Database(
                db_name, cluster.url, admin=functools.partial(cluster.psql, database=cluster.database)
            )
        tokens = WORK / f"compare-tokens-{db_name}.txt"
        logger.info("preparing the --compare chat database %s", db_name)
        limits.update(prepare_database(database.url, cfg.connections, cfg.rooms, cfg.room_size, tokens))
        migrate_trees(trees, database.url)

        def chat_loadgen(chat_args, server, token_file, label, timeout):
            return run_loadgen(Scenario("chat", "chat", chat_args, kind="chat"), server, token_file, label, timeout)

        for name in servers:
            for kind in chat_loads(args):

                def load(root: Path, label: str, database=database, name=name, kind=kind, tokens=tokens) -> dict:
                    tree_running = functools.partial(chat_running(args), root=root)
                    # PostgreSQL: the plain-insert references right before each load, as chat.run does, so
                    # that every load has its issue-17 ratios from the same minutes (the disk drifts).
                    reference = chat.references(database, cfg) if database.kind == "postgres" else None
                    summary, _ = chat.one_load(database, name, kind, cfg=cfg, running=tree_running,
                                               loadgen=chat_loadgen, tokens=tokens,
                                               label=f"{label}/chat-{database.kind}/{name}/{kind}")  # fmt: skip
                    verified = summary.pop("verified", {})
                    summary["verified_ok"] = verified.get("ok")
                    if reference is not None:
                        summary["reference"] = reference
                        summary.update(chat.reference_ratios(summary, reference, kind))
                    return summary

                title = f"chat on {'SQLite' if db_name == 'sqlite' else 'PostgreSQL'}, {kind}, {name}"
                items.append(CompareItem(f"chat-{db_name}-{kind}/{name}", title, f"chat-{kind}", load))
    return items


def migrate_trees(trees: dict[str, Path], database_url: str) -> None:
    """Each tree's own ``manage.py migrate`` on the shared database (the current one already ran)."""
    for root in list(trees.values())[1:]:
        migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
        subprocess.run(migrate, cwd=root, env=project_env(database_url), check=True, timeout=600)


def compare_run(
    args: argparse.Namespace, chosen: list[Scenario], servers: list[str], run_chat: bool, started: float,
    timeout: float,
) -> dict:  # fmt: skip
    """Every scenario on this tree and on ``--compare REV`` (its servers started from its own checkout),
    alternated round by round, each load on a fresh server; the tree that goes first alternates too, so that
    a drift of the machine during a round does not favour one tree."""
    from bench.report import compare_figures

    tree, sha = checkout(args.compare, WORK)
    rev = args.compare
    trees = {"current": REPO, rev: tree}
    logger.info("== compare: this tree vs %s (%s, in %s), %d rounds", rev, sha[:12], tree, args.rounds)
    results: dict = {}
    figures: list[dict] = []
    skipped: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tree, True)
        limits: dict = {}
        items = compare_items(args, stack, chosen, servers, run_chat, trees, timeout, limits)
        loads = len(items) * args.rounds * 2
        done = 0
        for item in items:
            runs: dict[str, list[dict]] = {}
            for round_number in range(args.rounds):
                order = list(trees.items()) if round_number % 2 == 0 else list(trees.items())[::-1]
                for label, root in order:
                    if time.monotonic() - started > args.max_time:
                        skipped.append(f"{item.key} round {round_number + 1} {label}")
                        continue
                    summary = item.load(root, label)
                    runs.setdefault(label, []).append(summary)
                    done += 1
                    logger.info("compare [%d/%d, %.0f s] %s, %s round %d: %s", done, loads,
                                time.monotonic() - started, item.title, label, round_number + 1,
                                json.dumps(summary, default=str))  # fmt: skip
            results[item.key] = runs
            if runs:
                figures.append(compare_figures(item.key, item.title, item.kind, runs, rev))
                logger.info("compare %s: %s", item.title, json.dumps(figures[-1], default=str))
    if skipped:
        logger.warning("--max-time reached: %d --compare loads skipped", len(skipped))
    return {"rev": rev, "sha": sha, "rounds": args.rounds, "results": results, "figures": figures,
            "skipped": skipped, "loads": done, "limits": limits}  # fmt: skip


def chat_config(args: argparse.Namespace) -> chat.ChatConfig:
    """The chat scenario's settings, with ``--chat-rates`` as the paced sweep (a shorter sweep for a compare)."""
    cfg = chat.config(args.quick)
    if args.chat_window is not None:  # at least 1: main() checks
        cfg = replace(cfg, window=args.chat_window)
    if args.chat_rates:
        try:
            rates = [int(rate) for rate in args.chat_rates.split(",")]
        except ValueError:
            raise SystemExit(f"--chat-rates: whole messages/s, comma-separated (got {args.chat_rates!r})") from None
        if not rates or min(rates) < 1 or rates != sorted(rates):
            raise SystemExit(f"--chat-rates: ascending positive rates (got {args.chat_rates!r})")
        cfg = replace(cfg, rates=",".join(map(str, rates)))
    return cfg


def chat_loads(args: argparse.Namespace) -> tuple[str, ...]:
    loads = tuple(name for name in args.chat_loads.split(",") if name)
    if not loads or set(loads) - {"max", "paced"}:
        raise SystemExit(f"--chat-loads: choose among max,paced (got {args.chat_loads!r})")
    return loads


def chat_running(args: argparse.Namespace) -> chat.Runner:
    """How the chat scenario starts a server: one process, or ``--chat-workers`` of them over one Redis; the writer's
    batches in a thread of each (the default) or in a process of their own (``--chat-writer process``)."""
    env = {"CHAT_WRITER_PROCESS": "1" if args.chat_writer == "process" else "0"}
    if args.chat_workers > 1:
        return functools.partial(running, redis_processes=args.chat_workers, env=env)
    return functools.partial(running, env=env)


def chat_run(args: argparse.Namespace, servers: list[str], started: float) -> dict:
    """bench/chat.py on each database: SQLite (a fresh file) and a throwaway PostgreSQL cluster started here
    and stopped by PID afterwards (scripts/postgres.py)."""
    cfg = chat_config(args)
    names = [name for name in args.databases.split(",") if name]
    unknown = set(names) - set(chat.DATABASES)
    if unknown:
        raise SystemExit(f"--databases: unknown {', '.join(sorted(unknown))} (choose among {chat.DATABASES})")
    with contextlib.ExitStack() as stack:
        databases: dict[str, chat.Database] = {}
        tokens: dict[str, Path] = {}
        limits: dict = {}
        info: dict = {}
        for name in names:
            if name == "sqlite":
                path = WORK / "chat.sqlite3"
                databases[name] = chat.Database(name, sqlite_url(path), path)
                info[name] = {"engine": "SQLite (WAL, the default settings)"}
            else:
                pg_root = WORK / "pg"
                shutil.rmtree(pg_root, ignore_errors=True)
                cluster = postgres.start(pg_root, settings={"fsync": args.pg_fsync})
                stack.callback(cluster.stop)
                logger.info("PostgreSQL %s on 127.0.0.1:%s (pid %s, fsync=%s)", cluster.version, cluster.port,
                            cluster.pid, args.pg_fsync)  # fmt: skip
                admin = functools.partial(cluster.psql, database=cluster.database)
                databases[name] = chat.Database(name, cluster.url, admin=admin)
                info[name] = {"engine": f"PostgreSQL {cluster.version}", "fsync": args.pg_fsync,
                              "pool": "psycopg pool (DB_POOL defaults)"}  # fmt: skip
            tokens[name] = WORK / f"tokens-{name}.txt"
            logger.info("preparing the chat database %s: %d users, %d rooms of %d", name, cfg.connections,
                        cfg.rooms, cfg.room_size)  # fmt: skip
            limits[name] = prepare_database(databases[name].url, cfg.connections, cfg.rooms, cfg.room_size,
                                            tokens[name])  # fmt: skip
        logger.info("== chat (load average %s)", load_average())

        def loadgen(chat_args, server, token_file, label, timeout):
            # --profile: the max loads only (the paced sweep is mostly idle); delay past warm-up, 4 s of samples.
            profile = Path(args.profile) if args.profile and label.endswith("/max") else None
            return run_loadgen(Scenario("chat", "chat", chat_args, kind="chat"), server, token_file, label, timeout,
                               profile=profile, profile_seconds=4, profile_delay=3)  # fmt: skip

        result = chat.run(databases=databases, servers=servers, cfg=cfg, running=chat_running(args), loadgen=loadgen,
                          tokens=tokens, deadline=started + args.max_time, loads=chat_loads(args))  # fmt: skip
    result["databases"] = info
    result["workers"] = args.chat_workers
    result["writer"] = args.chat_writer
    result["limits"] = next(iter(limits.values()), {})
    result["database_limits"] = limits
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
