"""Fixtures for the end-to-end run against the production stack that ``make e2e`` brings up
(tests/e2e/run.py): nginx on two HTTPS origins, two daphne workers, PostgreSQL and Redis.

These tests run only inside that run, which sets ``E2E_STACK`` to the stack's state file and gives this
process the stack's environment (so the ORM here talks to the stack's PostgreSQL database); the everyday
``make test`` does not collect them. They reuse the frontend's browser fixtures and helpers
(tests/browser/): the same Chromium, console checks and screenshots, only the site is the real stack.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sockjs.protocol import redact_session_path
from tests.browser.conftest import WAIT_MS, Site
from tests.browser.conftest import browser_page as browser_page
from tests.browser.conftest import playwright_browser as playwright_browser
from tests.conftest import TEST_PASSWORD

STATE_FILE = os.environ.get("E2E_STACK", "")
if not STATE_FILE:
    # Not inside `make e2e`: there is no stack to test against.
    collect_ignore_glob = ["test_*.py"]


def stack_state() -> dict:
    """The stack as it is now (the supervisor rewrites it when it restarts a worker)."""
    return json.loads(Path(STATE_FILE).read_text())


def worker_pid(name: str) -> int:
    return next(w["pid"] for w in stack_state()["workers"] if w["name"] == name)


def worker_of(websocket_url: str, *, timeout: float = WAIT_MS / 1000) -> str:
    """Which daphne worker accepted this WebSocket: its path (SockJS's /ws/<server>/<session>/websocket is
    unique) appears in that worker's access log as WSCONNECT once the handshake is accepted."""
    line = f"WSCONNECT {redact_session_path(urlsplit(websocket_url).path)}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in stack_state()["workers"]:
            log = Path(worker["access_log"])
            if log.exists() and line in log.read_text(errors="replace"):
                return worker["name"]
        time.sleep(0.1)
    raise AssertionError(f"no worker's access log shows {line}")


def wait_for_worker_restart(name: str, old_pid: int) -> None:
    """The supervisor (systemd's Restart=always) brought ``name`` back with a new PID."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if worker_pid(name) not in (None, old_pid):
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} was not restarted")


@pytest.fixture(scope="session")
def stack() -> dict:
    return stack_state()


@pytest.fixture
def chat_users(stack, django_db_blocker):
    """A fresh database (flush) with alice, bob and the public room "Lobby" both belong to, as the
    frontend's tests expect; made before Playwright starts (the ORM refuses to run inside its loop)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    from chat import services

    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)
        users = get_user_model().objects
        alice = users.create_user(username="alice", password=TEST_PASSWORD)
        bob = users.create_user(username="bob", password=TEST_PASSWORD)
        room = services.room_create(creator=alice, name="Lobby", slug="lobby", is_private=False)
        services.room_join(room=room, user=bob)
        connections.close_all()
    return {"alice": alice, "bob": bob, "room": room}


@pytest.fixture
def split_site(stack, chat_users) -> Site:
    """The frontend's ``split_site``, but the real thing: nginx's two HTTPS origins."""
    return Site(server=None, site=stack["frontend"], api=stack["api"])


@pytest.fixture
def browser_args() -> list[str]:
    # The run makes Chromium trust the stack's CA (an NSS database in $HOME); without certutil it says so
    # and falls back to ignoring certificate errors.
    return ["--ignore-certificate-errors"] if os.environ.get("E2E_IGNORE_CERT_ERRORS") == "1" else []
