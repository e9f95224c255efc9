"""The bell's notification stream in a real browser when the server ends it (issue 16 item 6): the page
reconnects with a new ticket, and notifications keep arriving."""

from __future__ import annotations

import httpx
import pytest

from scripts.processes import free_port
from tests.browser.conftest import Site, log_in
from tests.conftest import TEST_PASSWORD

pytestmark = [pytest.mark.live, pytest.mark.browser]

COUNT_CLOSES = """() => {
  const bell = document.querySelector("[data-bell]");
  window.__streamCloses = 0;
  new MutationObserver(() => {
    if (bell.getAttribute("data-stream") === "closed") window.__streamCloses += 1;
  }).observe(bell, { attributes: true, attributeFilter: ["data-stream"] });
}"""


def test_the_bell_reconnects_with_a_new_ticket_when_its_token_expires(chat_users, daphne_factory, browser_page):
    port = free_port()
    site, api = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    split = Site(daphne_factory(port=port, SITE_ORIGIN=site, API_ORIGIN=api, FRONTEND_ORIGINS=site,
                                JWT_ACCESS_LIFETIME="12"), site, api)  # fmt: skip
    page, _ = browser_page()
    log_in(page, split, "bob")
    page.wait_for_selector("[data-bell][data-stream=open]")
    page.evaluate(COUNT_CLOSES)
    # The server ends the stream when the token that bought its ticket expires; the page opens a new one.
    page.wait_for_function(
        "() => window.__streamCloses >= 1 && document.querySelector('[data-bell]').dataset.stream === 'open'",
        timeout=40_000,
    )
    token = httpx.post(f"{api}/api/auth/token/", json={"username": "alice", "password": TEST_PASSWORD}, timeout=10)
    headers = {"Authorization": f"Bearer {token.json()['access']}"}
    dm = httpx.post(f"{api}/api/dms/bob/", headers=headers, timeout=10).json()
    httpx.post(f"{api}/api/rooms/{dm['slug']}/messages/", json={"body": "still there?"}, headers=headers,
               timeout=10).raise_for_status()  # fmt: skip
    page.locator(".toast[data-kind=direct_message]").wait_for(timeout=15_000)
