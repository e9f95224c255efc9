"""Social login in a real browser beside form login: "Sign in with Local ID" at the local OpenID Connect
provider, back to the app with the same JWT pair as a form-login user, then both chat in a room over STOMP
and get each other's mentions over SSE; logout blacklists the refresh token. Denied consent and a provider
that is down end on the login page with a message. Every test also fails on any console error, failed
request or CSP violation (tests/browser/conftest.py)."""

from __future__ import annotations

import httpx
import pytest

from scripts.processes import free_port
from tests.browser.conftest import Site, log_in, save_screenshot
from tests.browser.test_chat import TOAST_WAIT_MS, message, open_room, send
from tests.conftest import TEST_PASSWORD
from tests.social.conftest import OIDC_NAME, social_env

pytestmark = [pytest.mark.live, pytest.mark.browser]


def start_social_login(page, site, *, button: str = f"Sign in with {OIDC_NAME}") -> None:
    page.goto(site.url("/login/"))
    page.get_by_role("button", name=button).click()


def sign_in_at_provider(page, site, username: str, *, consent: bool = True) -> None:
    """The provider's own pages: its login form, then the consent page."""
    page.wait_for_url(f"{site.provider.url}/login/**")
    page.get_by_label("Provider username").fill(username)
    page.get_by_label("Provider password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in at the provider").click()
    page.wait_for_url(f"{site.provider.issuer}/authorize/**")
    page.get_by_role("button", name="Authorize" if consent else "Cancel").click()


def jwt_pair(page) -> dict:
    page.wait_for_function("() => JSON.parse(localStorage.getItem('chat.jwt') || 'null')?.access")
    return page.evaluate("() => JSON.parse(localStorage.getItem('chat.jwt'))")


def test_social_and_form_login_users_chat_over_stomp_and_get_notifications_alike(social_site, browser_page):
    sam, _ = browser_page()
    alice, _ = browser_page()

    start_social_login(sam, social_site)
    sign_in_at_provider(sam, social_site, "sam")
    sam.wait_for_url(social_site.url("/"))
    sam_pair = jwt_pair(sam)
    log_in(alice, social_site, "alice")
    alice_pair = jwt_pair(alice)

    # The same kind of pair, accepted the same way by the API.
    for pair, name in ((sam_pair, "sam"), (alice_pair, "alice")):
        assert pair["user"] == name
        me = httpx.get(f"{social_site.api}/api/me/", headers={"Authorization": f"Bearer {pair['access']}"})
        assert me.status_code == 200 and me.json()["username"] == name

    # sam is new: he joins the public room from the room list (REST with his JWT).
    sam.locator("[data-join=lobby]").click()
    sam.wait_for_url(social_site.url("/rooms/lobby/"))
    sam.wait_for_selector("[data-connection][data-state=connected]")
    open_room(alice, social_site)
    alice.locator("[data-presence] [data-user=sam]").wait_for()
    sam.locator("[data-presence] [data-user=alice]").wait_for()

    send(sam, "hello from a social login")
    message(alice, "hello from a social login").wait_for()
    send(alice, "hello from a form login")
    message(sam, "hello from a form login").wait_for()

    # Notifications over SSE, both ways: each mentions the other while the other's bell stream is open on
    # another page (issue 20: the room being viewed pops no toast for its own mentions).
    sam.goto(social_site.url("/"))
    sam.wait_for_selector("[data-bell][data-stream=open]")
    send(alice, "@sam look at this")
    sam.locator(".toast[data-kind=mention]", has_text="alice mentioned you").wait_for(timeout=TOAST_WAIT_MS)
    open_room(sam, social_site)
    alice.goto(social_site.url("/"))
    alice.wait_for_selector("[data-bell][data-stream=open]")
    send(sam, "@alice and this")
    alice.locator(".toast[data-kind=mention]", has_text="sam mentioned you").wait_for(timeout=TOAST_WAIT_MS)
    save_screenshot(sam, "social-login-room")


def test_logout_after_a_social_login_blacklists_the_refresh_token_and_ends_the_session(social_site, browser_page):
    page, _ = browser_page()
    start_social_login(page, social_site)
    sign_in_at_provider(page, social_site, "sam")
    page.wait_for_url(social_site.url("/"))
    refresh = jwt_pair(page)["refresh"]

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(social_site.url("/login/"))

    assert page.evaluate("() => localStorage.getItem('chat.jwt')") is None
    answer = httpx.post(f"{social_site.api}/api/auth/token/refresh/", json={"refresh": refresh})
    assert answer.status_code == 401
    page.goto(social_site.url("/"))
    page.wait_for_url(f"{social_site.site}/login/**")


def test_denied_consent_returns_to_the_login_page_with_a_message(social_site, browser_page):
    page, _ = browser_page()
    start_social_login(page, social_site)
    sign_in_at_provider(page, social_site, "sam", consent=False)

    page.wait_for_url(social_site.url("/login/"))
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert f"Sign-in with {OIDC_NAME} was cancelled" in alert.inner_text()
    assert page.evaluate("() => localStorage.getItem('chat.jwt')") is None
    page.get_by_label("Username").wait_for()  # the form is still there to log in with
    save_screenshot(page, "login-social-cancelled")


def test_a_provider_that_is_down_shows_a_message_on_the_login_page(chat_users, daphne_factory, browser_page):
    port = free_port()
    site, api = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    server = daphne_factory(port=port, SITE_ORIGIN=site, API_ORIGIN=api, FRONTEND_ORIGINS=site,
                            **social_env(f"http://127.0.0.1:{free_port()}/o"))  # fmt: skip
    split = Site(server, site, api)
    page, _ = browser_page()

    start_social_login(page, split)

    page.wait_for_url(split.url("/login/"))
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert f"{OIDC_NAME} could not be reached" in alert.inner_text()
    # The password form still works.
    log_in(page, split, "alice")


def test_without_a_configured_provider_the_login_page_shows_only_the_form(split_site, browser_page):
    page, _ = browser_page()
    page.goto(split_site.url("/login/"))
    page.get_by_label("Username").wait_for()
    assert page.locator("[data-social-login]").count() == 0
    assert page.get_by_role("button", name="Sign in with").count() == 0
