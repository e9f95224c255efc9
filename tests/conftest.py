"""Shared fixtures: users and JWTs, and real server processes (redis-server, daphne) started and stopped by PID.

Live servers share the pytest-django test database (a SQLite file in WAL mode), so a test that talks to
one must use ``transactional_db`` (or the ``live_db`` fixture) for its rows to be visible to the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from scripts import postgres
from scripts import redis_cluster as redis_clusters
from scripts.processes import free_port, port_open, stop

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "test-output"
TEST_PASSWORD = "correct-horse-battery-staple"


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it holds; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(autouse=True)
def _generous_auth_throttle(settings):
    """Tests log in far more often than a person; the throttle tests lower the rate themselves."""
    settings.AUTH_THROTTLE_RATE = "100000/min"
    settings.AUTH_LOCKOUT_FREE_FAILURES = 100000


# --- Users and tokens ------------------------------------------------------------------------------------


@pytest.fixture
def make_user(django_user_model):
    """Create a user: ``make_user("alice")``, password TEST_PASSWORD."""

    def make(username: str, **extra):
        return django_user_model.objects.create_user(username=username, password=TEST_PASSWORD, **extra)

    return make


def access_token_for(user) -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    return str(AccessToken.for_user(user))


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def auth_client(api_client):
    """``auth_client(user)``: an APIClient sending that user's JWT."""

    def for_user(user):
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
        return client

    return for_user


# --- The ASGI application in process (Channels communicators) -----------------------------------------------


@pytest.fixture
def application():
    """The project's ASGI application, for ``WebsocketCommunicator``/``HttpCommunicator`` tests."""
    from chatproject.asgi import application

    return application


@pytest.fixture
async def fresh_broker():
    """A runtime of the test's own (a new broker, settings read again), closed after it."""
    from stompengine import runtime

    built = runtime.install(runtime.Runtime.from_settings())
    yield built
    await runtime.uninstall()


# --- Real server processes -----------------------------------------------------------------------------


@dataclass
class ServerProcess:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.process)

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerProcess]:
    """A private redis-server on a free loopback port, no persistence; stopped by PID at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `make test`, which installs it (Debian package redis-server)")
    OUTPUT.mkdir(exist_ok=True)
    port = free_port()
    log_path = OUTPUT / f"redis-{port}.log"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--logfile", str(log_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = ServerProcess("redis", port, process, log_path)
    try:
        wait_for(lambda: port_open(port), timeout=10, what="redis-server to listen")
        yield server
    finally:
        server.stop()


def redis_restart(server: ServerProcess) -> ServerProcess:
    """Start a new redis-server on the same port (after a fault test killed the old one)."""
    binary = shutil.which("redis-server")
    process = subprocess.Popen(
        [binary, "--port", str(server.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--logfile", str(server.log_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    server.process = process
    wait_for(lambda: port_open(server.port), timeout=10, what="redis-server to listen again")
    return server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[redis_clusters.Cluster]:
    """A local Redis Cluster for the session: three masters and three replicas on free loopback ports,
    ``cluster-node-timeout`` 1000 ms (a killed master's replica takes over within seconds); stopped by PID.
    ``redis_cluster.url`` names one node (REDIS_URL with REDIS_CLUSTER=1). Fails (never skips) without
    redis-server/redis-cli."""
    OUTPUT.mkdir(exist_ok=True)
    try:
        cluster = redis_clusters.start(masters=3, replicas=1, node_timeout_ms=1000, log_dir=OUTPUT)
    except redis_clusters.RedisClusterUnavailable as exc:
        pytest.fail(f"{exc} (make test installs redis-server)")
    try:
        yield cluster
    finally:
        cluster.stop()


def test_database_path() -> str:
    from django.db import connection

    return str(connection.settings_dict["NAME"])


@pytest.fixture
def live_db(transactional_db) -> str:
    """Committed rows visible to server processes; returns the SQLite file they must open."""
    return test_database_path()


@pytest.fixture
def daphne_factory(live_db) -> Iterator[Callable[..., ServerProcess]]:
    """``daphne_factory(**env)`` starts ``daphne chatproject.asgi:application`` on a free port.

    The server uses the test database; extra keyword arguments become environment variables
    (e.g. ``REDIS_URL=redis_server_url``). Every server started is stopped by PID after the test.
    """
    started: list[ServerProcess] = []
    OUTPUT.mkdir(exist_ok=True)

    def start(
        *, server: str = "daphne", port: int | None = None, extra_args: Sequence[str] = (), **env_overrides: str
    ) -> ServerProcess:
        """``port``: listen there (pick it first with ``free_port()`` to put it in origins); ``extra_args``:
        appended to the server's command line (e.g. daphne ``-e ssl:…`` for a TLS endpoint)."""
        port = port or free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
            "DATABASE_URL": f"sqlite:///{live_db}",
            "DEBUG": "1",
            "SITE_ORIGIN": "http://localhost:8000",
            "API_ORIGIN": f"http://127.0.0.1:{port}",
            "FRONTEND_ORIGINS": "http://localhost:8000,http://127.0.0.1:*,http://localhost:*",
            "AUTH_THROTTLE_RATE": "10000/min",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("REDIS_URL", None)
        env.update({k: str(v) for k, v in env_overrides.items()})
        log_path = OUTPUT / f"{server}-{port}.log"
        if server == "daphne":
            # The production entry point: daphne plus its write-buffer adapter (chatproject/daphne_server.py).
            argv = [sys.executable, "-m", "chatproject.daphne_server", "-b", "127.0.0.1", "-p", str(port),
                    "chatproject.asgi:application"]  # fmt: skip
        elif server == "uvicorn":
            argv = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
                    "--ws", "chatproject.uvicorn_ws:SansIOProtocol", "--loop", "uvloop", "--http", "httptools",
                    "chatproject.asgi:application"]  # fmt: skip
        else:
            raise ValueError(f"unknown server {server!r}")
        argv = [*argv[:-1], *extra_args, argv[-1]]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        proc = ServerProcess(server, port, process, log_path, env)
        started.append(proc)

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{server} exited with {process.returncode}:\n{proc.log()[-3000:]}")
            try:
                return httpx.get(f"{proc.url}/readyz/", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=30, what=f"{server} on port {port} to answer /readyz/ with 200")
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def daphne_server(daphne_factory) -> ServerProcess:
    """One daphne with the in-memory channel layer."""
    return daphne_factory()


def node_script(script: str | Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60):
    """Run a Node script from tests/js with the project's node_modules; returns the CompletedProcess."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: `make test` installs nodejs and npm")
    path = Path(script)
    if not path.is_absolute():
        path = REPO / "tests" / "js" / path
    return subprocess.run(
        [node, str(path), *args], cwd=REPO, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


# --- PostgreSQL ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[postgres.Cluster]:
    """A throwaway PostgreSQL cluster (scripts/postgres.py), migrated, for the whole session; server processes
    use it with ``DATABASE_URL=postgres_cluster.url``. Fails (never skips) when PostgreSQL is not installed."""
    try:
        cluster = postgres.start(settings={"fsync": "off"}, createdb=True)
    except postgres.PostgresNotInstalled as exc:
        pytest.fail(f"{exc} (make test installs it)")
    try:
        migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
        subprocess.run(migrate, cwd=REPO, env={**os.environ, "DATABASE_URL": cluster.url}, check=True, timeout=300)
        yield cluster
    finally:
        cluster.stop()
