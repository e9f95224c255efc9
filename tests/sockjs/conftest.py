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
    log_path = OUTPUT / f"sockjs-daphne-{port}.log"
    argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), application]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = LiveSockJS(port, process, log_path)
    for _ in range(300):  # bounded: 300 x 0.1 s
        if process.poll() is not None:
            raise AssertionError(f"daphne exited with {process.returncode}:\n{server.log()[-3000:]}")
        if port_open(port):
            return server
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"daphne did not listen on {port}:\n{server.log()[-3000:]}")


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


@pytest.fixture(scope="session", params=["project", "standalone"])
def sockjs_server(request, sockjs_daphne) -> LiveSockJS:
    """The conformance target: the project's ASGI app, and the package alone."""
    if request.param == "project":
        return request.getfixturevalue("project_sockjs_server")
    return request.getfixturevalue("standalone_sockjs_server")


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
