"""Driving Debian's Chromium with Playwright: shared by the browser tests and ``scripts/screenshots.py``."""

from __future__ import annotations

# Headless Chromium as root, with nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def log_in(page, base: str, username: str, password: str) -> None:
    """Log in through the HTML form at ``base`` and wait until global.js holds the JWT pair."""
    page.goto(base + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base + "/")
    page.wait_for_function("() => JSON.parse(localStorage.getItem('chat.jwt') || 'null')?.access")
