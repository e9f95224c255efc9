"""Live-server fixtures for the SockJS tests: session-scoped daphne processes, started and stopped by PID.

``sockjs_server`` runs the project (``chatproject.asgi``) with ``SOCKJS_TEST_SERVICES=1``; the
``standalone_sockjs_server`` runs the package with no project apps at all (tests/sockjs/support), to
show the layer is reusable. ``start_daphne`` is the factory behind both, for suites needing other
settings (short heartbeats and disconnect delays, say). They need no database: the test services never
touch one, so they are session-scoped and shared by the whole SockJS suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.processes import free_port, port_open, stop

REPO = Path(__file__).resolve().parents[2]
SUPPORT = Path(__file__).resolve().parent / "support"
OUTPUT = REPO / "test-output"
sys.path.insert(0, str(SUPPORT))  # rawhttp and the standalone application


@dataclass
class LiveSockJS:
    """A running daphne serving the SockJS test services under /sockjs-test/."""

    port: int
    process: subprocess.Popen
    log_path: Path
    name: str = "daphne"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def top(self) -> str:
        return f"{self.url}/sockjs-test"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop(self.process)


def start_daphne(application: str, **env_overrides: str) -> LiveSockJS:
    """Start daphne on a free 127.0.0.1 port with ``application``; returns once it accepts connections."""
    return start_server("daphne", application, **env_overrides)


def websocket_max_message_size() -> int:
    from django.conf import settings

    return settings.WEBSOCKET_MAX_MESSAGE_SIZE


def start_server(server: str, application: str, *, http: str = "h11", **env_overrides: str) -> LiveSockJS:
    """Start ``daphne`` or ``uvicorn`` on a free port.

    uvicorn runs with ``--http h11``: its httptools protocol chunks streaming responses to HTTP/1.0
    clients (a uvicorn defect, proven with a bare ASGI app in test_server_defects.py), which the SockJS
    protocol refuses; h11 answers HTTP/1.0 correctly.
    """
    OUTPUT.mkdir(exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(SUPPORT)]),
        "PYTHONUNBUFFERED": "1",
        "SOCKJS_TEST_SERVICES": "1",
        "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        "DATABASE_URL": f"sqlite:///{OUTPUT / 'sockjs-unused.sqlite3'}",
        "DEBUG": "1",
        # The project's WebSocket stack checks Origin against FRONTEND_ORIGINS before any consumer runs.
        "FRONTEND_ORIGINS": "http://127.0.0.1:*,http://localhost:*,http://frontend.example:8080",
    }
    env.pop("REDIS_URL", None)
    env.update(env_overrides)
    log_path = OUTPUT / f"sockjs-{server}-{port}.log"
    if server == "daphne":
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), application]
    else:
        argv = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
                "--ws", "websockets-sansio", "--http", http,
                # The project's one WebSocket message limit (daphne gets it from sockjs/daphne.py).
                "--ws-max-size", str(websocket_max_message_size()), application]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    live = LiveSockJS(port, process, log_path, server)
    for _ in range(300):  # bounded: 300 x 0.1 s
        if process.poll() is not None:
            raise AssertionError(f"{argv[2]} exited with {process.returncode}:\n{live.log()[-3000:]}")
        if port_open(port):
            return live
        time.sleep(0.1)
    live.stop()
    raise AssertionError(f"{argv[2]} did not listen on {port}:\n{live.log()[-3000:]}")


@pytest.fixture(scope="session")
def sockjs_daphne() -> Iterator[Callable[..., LiveSockJS]]:
    """Factory: ``sockjs_daphne(application, **env)``; every server is stopped by PID at the end."""
    started: list[LiveSockJS] = []

    def start(application: str = "chatproject.asgi:application", **env: str) -> LiveSockJS:
        server = start_daphne(application, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def sockjs_uvicorn() -> Iterator[Callable[..., LiveSockJS]]:
    """Factory: ``sockjs_uvicorn(application, **env)``, as ``sockjs_daphne`` for uvicorn."""
    started: list[LiveSockJS] = []

    def start(application: str = "chatproject.asgi:application", *, http: str = "h11", **env: str) -> LiveSockJS:
        server = start_server("uvicorn", application, http=http, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def start_bare_uvicorn(sockjs_uvicorn) -> Callable[[str, str], LiveSockJS]:
    """``start_bare_uvicorn("minimal_asgi:app", http)``: uvicorn with a bare ASGI app (server-defect proofs)."""
    started: dict[tuple[str, str], LiveSockJS] = {}

    def start(application: str, http: str) -> LiveSockJS:
        if (application, http) not in started:
            started[(application, http)] = sockjs_uvicorn(application, http=http)
        return started[(application, http)]

    return start


@pytest.fixture(scope="session", params=["project", "standalone", "project-uvicorn"])
def sockjs_server(request, sockjs_daphne) -> LiveSockJS:
    """The conformance target: the project's ASGI app (daphne and uvicorn), and the package alone."""
    if request.param == "project":
        return request.getfixturevalue("project_sockjs_server")
    if request.param == "project-uvicorn":
        return request.getfixturevalue("uvicorn_sockjs_server")
    return request.getfixturevalue("standalone_sockjs_server")


@pytest.fixture(scope="session")
def uvicorn_sockjs_server(sockjs_uvicorn) -> LiveSockJS:
    return sockjs_uvicorn("chatproject.asgi:application")


@pytest.fixture(scope="session")
def project_sockjs_server(sockjs_daphne) -> LiveSockJS:
    return sockjs_daphne("chatproject.asgi:application")


@pytest.fixture(scope="session")
def fast_sockjs_server(sockjs_daphne) -> LiveSockJS:
    """Short heartbeat and disconnect delay, for the timer tests (which poll, never time)."""
    return sockjs_daphne("chatproject.asgi:application", SOCKJS_HEARTBEAT_INTERVAL="0.2", SOCKJS_DISCONNECT_DELAY="0.3")


@pytest.fixture(scope="session")
def standalone_sockjs_server(sockjs_daphne) -> LiveSockJS:
    """The package alone, with the test services and /sockjs-restricted/echo (one allowed origin)."""
    return sockjs_daphne("standalone_asgi:application", DJANGO_SETTINGS_MODULE="standalone_settings")
