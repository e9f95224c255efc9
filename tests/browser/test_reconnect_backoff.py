"""The room page honours the server's CONNECT admission: ERROR code:busy with retry-after, then a retry no sooner.

The worker admits one CONNECT every 4 s (burst 1): alice's page takes the token, bob's first CONNECT is
refused busy with retry-after 4, his page says so and connects on its own once that time (plus jitter) has
passed, not before: the server counts exactly one busy refusal.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from scripts.processes import free_port
from tests.browser.conftest import Site, log_in

pytestmark = [pytest.mark.live, pytest.mark.browser]
WAIT_MS = 30_000


@pytest.fixture
def busy_site(chat_users, daphne_factory) -> Site:
    port = free_port()
    site, api = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    server = daphne_factory(port=port, SITE_ORIGIN=site, API_ORIGIN=api, FRONTEND_ORIGINS=site,
                            STOMP_CONNECT_RATE="0.25", STOMP_CONNECT_BURST="1")  # fmt: skip
    return Site(server, site, api)


def test_a_page_refused_busy_waits_the_retry_after_then_connects(busy_site, browser_page):
    alice, _ = browser_page()
    bob, _ = browser_page()
    log_in(alice, busy_site, "alice")
    log_in(bob, busy_site, "bob")
    alice.goto(f"{busy_site.site}/rooms/lobby/")
    alice.wait_for_selector("[data-connection][data-state=connected]", timeout=WAIT_MS)
    bob.goto(f"{busy_site.site}/rooms/lobby/")
    bob.locator("[data-connection]", has_text="Server busy").wait_for(timeout=WAIT_MS)
    refused = time.monotonic()
    bob.wait_for_selector("[data-connection][data-state=connected]", timeout=WAIT_MS)
    waited = time.monotonic() - refused
    assert waited >= 3.5, f"bob's page came back after {waited:.1f} s, before the server's retry-after of 4 s"
    # A page that ignored retry-after would have been refused again on each early attempt.
    metrics = httpx.get(f"{busy_site.server.url}/metrics", timeout=10).text
    busy = re.search(r'^chat_stomp_connects_total\{outcome="busy"\} (\S+)$', metrics, re.M)
    assert busy is not None and float(busy.group(1)) == 1.0, metrics[-2000:]
