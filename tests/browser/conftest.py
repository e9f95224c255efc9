"""Browser fixtures: Debian's headless Chromium driven by Playwright, against a live daphne whose pages and
API are two origins of one server (pages on http://localhost:<port>, API on http://127.0.0.1:<port>).

Every page opened through ``browser_page`` records console errors, page errors, failed requests and HTTP
errors; the fixture fails the test if any were seen (issue 8, browser test 4), so each test checks the
console without saying so.

Playwright's sync API runs an event loop in this thread, so Django's ORM (and its on-commit publishing)
refuses to run while it is started: fixtures create database rows before Playwright starts, and tests
create anything later through the API, as a client would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scripts.browser import CHROMIUM_ARGS
from scripts.browser import log_in as form_log_in
from scripts.processes import free_port
from tests.conftest import OUTPUT, REPO, TEST_PASSWORD, ServerProcess

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Bounded waits: generous enough for a loaded 2-core machine, never asserted as timings.
WAIT_MS = 15_000
SCREENSHOTS = OUTPUT / "screenshots"
DOCS = REPO / "docs"


@dataclass
class ConsoleLog:
    """What a user would see in devtools: console errors and warnings about CORS, CSP or mixed content,
    uncaught errors, failed requests and HTTP error responses."""

    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)

    def attach(self, page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda websocket: self.websockets.append(websocket.url))

    def _console(self, message) -> None:
        text = message.text
        noisy = any(s in text for s in ("Mixed Content", "Content Security Policy", "CORS", "Cross-Origin"))
        if message.type == "error" or (message.type == "warning" and noisy):
            self.problems.append(f"console {message.type}: {text} ({message.location.get('url', '')})")

    def _failed(self, request) -> None:
        failure = request.failure or ""
        # Streams and long polls cut by navigating away or closing the page are aborted, not failed.
        if "ERR_ABORTED" in failure:
            return
        self.problems.append(f"request failed: {request.method} {request.url}: {failure}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def forgive(self, text: str) -> None:
        """Drop the problems so far that contain ``text`` (ones a test provoked on purpose)."""
        self.problems[:] = [p for p in self.problems if text not in p]

    def assert_clean(self) -> None:
        assert not self.problems, "the browser saw problems:\n" + "\n".join(self.problems)


@dataclass
class Site:
    """One daphne serving pages on ``site`` and the API on ``api`` (same process, two origins)."""

    server: ServerProcess
    site: str
    api: str

    def url(self, path: str) -> str:
        return self.site + path


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """A SQLite test database of this run's own: several people may run tests in one working tree."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3") and db.get("TEST", {}).get("NAME"):
        db["TEST"]["NAME"] = str(REPO / "var" / f"test-db-browser-{os.getpid()}.sqlite3")


@pytest.fixture
def chat_users(live_db, make_user):
    """alice, bob and a public room "lobby" both belong to; created before Playwright starts."""
    from chat import services

    alice, bob = make_user("alice"), make_user("bob")
    room = services.room_create(creator=alice, name="Lobby", slug="lobby", is_private=False)
    services.room_join(room=room, user=bob)
    return {"alice": alice, "bob": bob, "room": room}


@pytest.fixture
def split_site(chat_users, daphne_factory) -> Site:
    port = free_port()
    site, api = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    server = daphne_factory(port=port, SITE_ORIGIN=site, API_ORIGIN=api, FRONTEND_ORIGINS=site)
    return Site(server, site, api)


@pytest.fixture
def browser_args() -> list[str]:
    """Extra Chromium switches for one test module (override the fixture)."""
    return []


@pytest.fixture
def playwright_browser(chat_users, browser_args) -> Iterator:
    """Chromium for one test (started after the database rows; see the module docstring)."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: `make test` installs it (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *browser_args]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(playwright_browser):
    """``browser_page(**context_options)`` → (page, log): a fresh context (own storage) and its console log.

    All logs are checked for problems when the test ends.
    """
    contexts, logs = [], []

    def open_page(**context_options):
        context = playwright_browser.new_context(**context_options)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        log = ConsoleLog()
        log.attach(page)
        logs.append(log)
        return page, log

    yield open_page
    for context in contexts:
        with contextlib.suppress(Exception):
            context.close()
    problems = [p for log in logs for p in log.problems]
    assert not problems, "the browser saw problems:\n" + "\n".join(problems)


def log_in(page, site: Site | str, username: str, password: str = TEST_PASSWORD) -> None:
    """Log in through the HTML form and wait until global.js holds the JWT pair."""
    form_log_in(page, getattr(site, "site", site), username, password)


def save_screenshot(page, name: str) -> Path:
    """A screenshot under test-output/screenshots/ (one per run and name); with UPDATE_DOCS_SCREENSHOTS=1
    also the README's copy under docs/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.png"
    page.screenshot(path=str(path))
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"))
    return path
