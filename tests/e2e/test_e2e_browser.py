"""The production path in a real browser: HTTPS pages on one origin, the API behind nginx on another,
two daphne workers sharing Redis and PostgreSQL. The frontend's own browser tests run here unchanged
(imported below), plus what only this stack can show: two users on different workers, SockJS fallbacks
with sticky sessions through the proxy, long-cached hashed static files and secure cookies."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser.conftest import log_in, save_screenshot
from tests.browser.test_attachments_browser import share_image_and_file
from tests.browser.test_chat import (
    chat_both_ways,
    open_room,
    test_a_mention_shows_a_toast_and_is_replayed_when_the_page_is_reopened,  # noqa: F401  (run here too)
    test_two_users_chat_live_with_presence_typing_and_history,  # noqa: F401
)
from tests.e2e.conftest import stack_state, worker_of

pytestmark = [pytest.mark.live, pytest.mark.browser]
MAX_RECONNECTS = 16  # each new SockJS session lands on either worker; 2**-16 to never reach the other one


def put_on_different_workers(site, alice, alice_log, bob, bob_log) -> tuple[str, str]:
    """Reload bob's room page (a new SockJS session) until nginx placed him on the worker alice is not on."""
    first = worker_of(alice_log.websockets[-1])
    for _ in range(MAX_RECONNECTS):
        second = worker_of(bob_log.websockets[-1])
        if second != first:
            return first, second
        seen = len(bob_log.websockets)
        bob.reload()
        bob.wait_for_selector("[data-connection][data-state=connected]")
        assert len(bob_log.websockets) > seen, "the reload opened a new WebSocket"
    raise AssertionError("nginx never put bob on the second worker: is the upstream balanced?")


def test_two_users_on_different_workers_chat_over_https_through_nginx(split_site, browser_page):
    alice, alice_log = browser_page()
    bob, bob_log = browser_page()
    log_in(alice, split_site, "alice")
    log_in(bob, split_site, "bob")
    open_room(alice, split_site)
    open_room(bob, split_site)
    assert alice.locator("[data-connection]").get_attribute("data-transport") == "websocket"
    wss = split_site.api.replace("https://", "wss://")
    assert all(url.startswith(f"{wss}/ws/") for url in alice_log.websockets + bob_log.websockets)

    alice_worker, bob_worker = put_on_different_workers(split_site, alice, alice_log, bob, bob_log)
    print(f"alice on {alice_worker}, bob on {bob_worker}")
    # Presence, typing and messages cross from one worker to the other through Redis.
    alice.locator("[data-presence] [data-user=bob]").wait_for()
    chat_both_ways(split_site, alice, bob)

    cookies = {c["name"]: c for c in alice.context.cookies()}
    assert cookies["sessionid"]["secure"] and cookies["sessionid"]["httpOnly"]
    assert cookies["csrftoken"]["secure"]
    path = save_screenshot(alice, "e2e-room-https")
    print(f"screenshot of the HTTPS chat page: {path}")


@pytest.mark.parametrize("transport", ["xhr-streaming", "xhr-polling"])
def test_chat_over_sockjs_fallbacks_through_nginx_keeps_each_session_on_one_worker(transport, split_site, browser_page):
    alice, alice_log = browser_page()
    bob, _ = browser_page()
    log_in(alice, split_site, "alice")
    log_in(bob, split_site, "bob")
    open_room(alice, split_site, query=f"?transports={transport}")
    open_room(bob, split_site, query=f"?transports={transport}")
    assert alice.locator("[data-connection]").get_attribute("data-transport") == transport
    assert alice_log.websockets == [], "no WebSocket was tried"

    chat_both_ways(split_site, alice, bob)

    # Every request of one SockJS session (receive and xhr_send) went to one worker: nginx hashes the
    # session id, and the session lives in that worker's memory.
    sessions = {m.group(1) for url in alice_log.requests if (m := re.search(r"/ws/[^/]+/([^/]+)/xhr", url))}
    assert sessions
    access_log = (Path(stack_state()["work"]) / "nginx" / "access.log").read_text()
    for session in sessions:
        # The site's log format keeps only a session id's first 6 characters (deploy/nginx), and no query.
        assert session not in access_log and "key=" not in access_log, "nginx logged a SockJS session id or key"
        upstreams = set(re.findall(rf"upstream=(\S+) session={re.escape(session[:6])} ", access_log))
        assert len(upstreams) == 1, f"SockJS session {session} was served by {upstreams}"


def test_static_files_are_hashed_and_long_cached_and_pages_carry_hsts(stack):
    with httpx.Client(verify=ssl.create_default_context(cafile=stack["ca"]), timeout=10) as client:
        page = client.get(stack["frontend"] + "/login/")
        assert page.status_code == 200
        assert "max-age=31536000" in page.headers["strict-transport-security"]
        assert "secure" in page.headers.get("set-cookie", "").lower()  # csrftoken, behind the TLS proxy
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
        assert assets and all(re.search(r"\.[0-9a-f]{12}\.(js|css)$", a) for a in assets if a.endswith((".js", ".css")))
        for asset in assets:
            response = client.get(stack["frontend"] + asset)
            assert response.status_code == 200, asset
            assert "immutable" in response.headers["cache-control"], asset
        # The API origin serves no pages.
        assert client.get(stack["api"] + "/login/").status_code == 404
        assert urlsplit(stack["api"]).scheme == "https"


def test_files_through_nginx_and_the_s3_server(split_site, browser_page, stack):
    """An image and a file shared over HTTPS: uploads through nginx's upload route, files on the S3 API
    server (behind TLS), shown from its presigned URLs in the other user's page."""
    alice, _ = browser_page()
    bob, bob_log = browser_page()
    share_image_and_file(split_site, alice, bob)
    s3_requests = [url for url in bob_log.requests if "X-Amz-Signature=" in url]
    assert s3_requests and all(url.startswith("https://") for url in s3_requests), bob_log.requests[-10:]


def test_nginx_refuses_an_upload_over_the_limit_as_json(split_site, chat_users, stack):
    from tests.conftest import access_token_for
    from tests.e2e.stack import UPLOAD_LIMIT

    response = httpx.post(
        f"{split_site.api}/api/rooms/lobby/uploads/",
        headers={"Authorization": f"Bearer {access_token_for(chat_users['alice'])}", "Origin": split_site.site},
        files={"file": ("big.txt", b"a" * (UPLOAD_LIMIT + 200_000), "text/plain")},
        verify=ssl.create_default_context(cafile=stack["ca"]),
        timeout=120,
    )
    assert response.status_code == 413 and response.json()["code"] == "too-large"
    assert response.headers["access-control-allow-origin"] == split_site.site
