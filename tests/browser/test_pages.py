"""The pages in a real browser: form login ends with a JWT pair, scripts run in a fixed order with one
namespace, the CSP forbids inline script, user data is rendered as text, logout blacklists the refresh
token. Every test also fails on any console error, failed request or CSP violation (conftest)."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.conftest import log_in
from tests.conftest import TEST_PASSWORD

pytestmark = [pytest.mark.live, pytest.mark.browser]


def api_as(site, username: str) -> httpx.Client:
    """An API client with that user's JWT (through the API, so the server publishes what it creates)."""
    token = httpx.post(f"{site.api}/api/auth/token/", json={"username": username, "password": TEST_PASSWORD})
    token.raise_for_status()
    return httpx.Client(base_url=site.api, headers={"Authorization": f"Bearer {token.json()['access']}"})


def test_form_login_hands_over_a_jwt_pair_that_the_api_accepts(split_site, browser_page):
    page, _ = browser_page()
    log_in(page, split_site, "alice")

    pair = page.evaluate("() => JSON.parse(localStorage.getItem('chat.jwt'))")
    assert pair["user"] == "alice"
    me = httpx.get(f"{split_site.api}/api/me/", headers={"Authorization": f"Bearer {pair['access']}"})
    assert me.status_code == 200 and me.json()["username"] == "alice"
    # The code was used once and is gone from the next page.
    page.reload()
    assert page.locator('meta[name="jwt-handover"]').count() == 0
    page.get_by_role("link", name="Lobby").first.wait_for()


def test_scripts_run_in_order_with_one_namespace_and_the_api_origin_from_configuration(split_site, browser_page):
    page, _ = browser_page()
    log_in(page, split_site, "alice")
    page.goto(split_site.url("/rooms/lobby/"))
    page.locator("[data-connection]").wait_for()

    scripts = page.eval_on_selector_all("head script", "els => els.map(e => [e.getAttribute('src'), e.defer])")
    srcs = [src for src, _ in scripts]
    assert all(defer for _, defer in scripts), "every script is deferred, so document order is execution order"
    # attachments.js: the room page's first page script since issue 21 (files), before chat.js; format.js
    # (issue 20, message formatting) before chat.js, which renders with it; members.js and autocomplete.js
    # (issue 20) after it.
    assert [s.rsplit("/", 1)[-1] for s in srcs] == [
        "sockjs.min.js", "stomp.umd.min.js", "global.js", "notifications.js", "attachments.js", "format.js", "chat.js",
        "members.js", "autocomplete.js",
    ]  # fmt: skip
    assert all(src.startswith("/static/") for src in srcs), "client libraries are served locally"
    assert page.locator("script:not([src])").count() == 0, "no inline script"
    assert page.evaluate("() => Object.isFrozen(window.Chat) && window.Chat.API_ORIGIN") == split_site.api
    # The formatter's one export is frozen like Chat (Chat is frozen before format.js runs).
    assert page.evaluate("() => Object.isFrozen(window.ChatFormat) && typeof window.ChatFormat.format") == "function"
    # Page scripts are IIFEs: none of their names leak into the global scope.
    leaked = page.evaluate("() => ['token', 'host', 'nickname', 'client', 'state', 'slug'].filter(n => n in window)")
    assert leaked == []


def test_pages_carry_a_csp_that_forbids_inline_script_and_allows_the_api_origin(split_site, browser_page):
    page, log = browser_page()
    response = page.goto(split_site.url("/login/"))
    csp = response.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in csp
    assert split_site.api in directives["connect-src"]
    assert split_site.api.replace("http://", "ws://") in directives["connect-src"]
    # Plain http page: no upgrade meta (it would break a development server without TLS).
    assert page.locator('meta[http-equiv="Content-Security-Policy"]').count() == 0
    # An inline script injected into the page is refused by the browser.
    violations = page.evaluate(
        """() => new Promise(resolve => {
            document.addEventListener('securitypolicyviolation', e => resolve(e.violatedDirective));
            const s = document.createElement('script'); s.textContent = 'window.injected = 1'; document.head.append(s);
            setTimeout(() => resolve(null), 2000);
        })"""
    )
    assert violations and violations.startswith("script-src")
    assert page.evaluate("() => window.injected") is None
    log.forgive("Content Security Policy")  # that refusal was the test's own doing


def test_message_bodies_room_names_and_user_names_are_rendered_as_text(split_site, browser_page):
    payload = '<img src=x onerror="window.pwned=1"><b>bold</b>'
    alice = api_as(split_site, "alice")
    alice.post("/api/rooms/", json={"name": f"Room {payload}", "slug": "xss"}).raise_for_status()
    alice.post("/api/rooms/xss/messages/", json={"body": payload}).raise_for_status()
    page, _ = browser_page()
    log_in(page, split_site, "alice")
    page.locator("[data-room-list] a", has_text="Room <img").wait_for()
    page.goto(split_site.url("/rooms/xss/"))
    message = page.locator(".message .body", has_text="<img")
    message.wait_for()
    assert message.inner_text() == payload
    assert page.locator(".messages img, .messages b, main img").count() == 0
    assert page.locator("h1").inner_text() == f"Room {payload}"
    assert page.evaluate("() => window.pwned") is None


def test_register_page_creates_an_account_and_signs_in_with_tokens(split_site, browser_page):
    page, _ = browser_page()
    page.goto(split_site.url("/register/"))
    page.get_by_label("Username").fill("dora")
    page.get_by_label("Password", exact=True).fill("a-long-enough-pass")
    page.get_by_label("Password again").fill("a-long-enough-pass")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(split_site.url("/"))
    page.wait_for_function("() => JSON.parse(localStorage.getItem('chat.jwt') || 'null')?.user === 'dora'")
    page.get_by_text("Signed in as").wait_for()


def test_logout_blacklists_the_refresh_token_then_ends_the_session(split_site, browser_page):
    page, _ = browser_page()
    log_in(page, split_site, "alice")
    refresh = page.evaluate("() => JSON.parse(localStorage.getItem('chat.jwt')).refresh")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(split_site.url("/login/"))
    assert page.evaluate("() => localStorage.getItem('chat.jwt')") is None
    answer = httpx.post(f"{split_site.api}/api/auth/token/refresh/", json={"refresh": refresh})
    assert answer.status_code == 401
    # The session is gone too: the room list sends us to the login page.
    page.goto(split_site.url("/"))
    assert page.url.startswith(split_site.url("/login/"))


def test_room_list_creates_rooms_and_opens_direct_messages(split_site, browser_page):
    page, _ = browser_page()
    log_in(page, split_site, "alice")
    page.get_by_label("Name", exact=True).fill("Book club")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(split_site.url("/rooms/book-club/"))
    page.locator("h1", has_text="Book club").wait_for()
    page.goto(split_site.url("/"))
    page.get_by_label("Username").fill("bob")
    page.get_by_role("button", name="Open conversation").click()
    page.wait_for_url("**/rooms/*/")
    page.locator("[data-connection]").wait_for()


def test_the_access_token_is_refreshed_before_it_expires(chat_users, daphne_factory, browser_page):
    from scripts.processes import free_port
    from tests.browser.conftest import Site

    port = free_port()
    site, api = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    split = Site(daphne_factory(port=port, SITE_ORIGIN=site, API_ORIGIN=api, FRONTEND_ORIGINS=site,
                                JWT_ACCESS_LIFETIME="12"), site, api)  # fmt: skip
    page, _ = browser_page()
    log_in(page, split, "alice")
    first = page.evaluate("() => JSON.parse(localStorage.getItem('chat.jwt')).access")
    page.wait_for_function(
        "first => JSON.parse(localStorage.getItem('chat.jwt')).access !== first", arg=first, timeout=30_000
    )
    # The API accepts the new token, and no request was ever answered 401 (the console log would say so).
    assert page.evaluate("() => window.Chat.api('/api/me/').then(me => me.username)") == "alice"


def test_unread_badges_count_other_peoples_messages_until_the_room_is_read(split_site, browser_page):
    api_as(split_site, "bob").post("/api/rooms/lobby/messages/", json={"body": "are you there?"}).raise_for_status()
    page, _ = browser_page()
    log_in(page, split_site, "alice")
    page.locator("[data-room-list] .group li[data-slug=lobby] .badge[data-unread='1']").wait_for()
    with page.expect_response(lambda r: r.url.endswith("/api/rooms/lobby/read/") and r.ok):
        page.goto(split_site.url("/rooms/lobby/"))
    page.locator(".message[data-id] .body", has_text="are you there?").wait_for()
    page.goto(split_site.url("/"))
    page.locator("[data-room-list] .group li[data-slug=lobby]").wait_for()
    assert page.locator("[data-room-list] li[data-slug=lobby] .badge").count() == 0
