"""Two people chatting in a real browser across split origins: live messages, presence and typing over
STOMP through SockJS (WebSocket, then forced xhr-streaming and xhr-polling fallbacks), history on
reload, and a mention that shows a notification toast and is still there when the page is reopened.
The conftest fails each test on any console error, failed request or CSP violation."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.conftest import WAIT_MS, log_in, save_screenshot

pytestmark = [pytest.mark.live, pytest.mark.browser]
TOAST_WAIT_MS = 10_000  # the bound for a notification to reach the page


def open_room(page, site, slug: str = "lobby", query: str = "") -> None:
    page.goto(f"{site.site}/rooms/{slug}/{query}")
    page.wait_for_selector("[data-connection][data-state=connected]")


def send(page, text: str) -> None:
    page.get_by_label("Message to").fill(text)
    page.get_by_role("button", name="Send").click()


def message(page, text: str):
    return page.locator(".message[data-id] .body", has_text=text)


def chat_both_ways(site, alice, bob) -> None:
    """Presence, typing and messages in both directions, then history after a reload."""
    alice.locator("[data-presence] [data-user=bob]").wait_for()
    bob.locator("[data-presence] [data-user=alice]").wait_for()

    bob.get_by_label("Message to").press_sequentially("hel")
    alice.locator("[data-typing]", has_text="bob is typing").wait_for()

    send(bob, "hello alice, <b>not bold</b>")
    message(alice, "hello alice").wait_for()
    message(bob, "hello alice").wait_for()  # the sender's own copy, confirmed by the server
    alice.locator("[data-typing]", has_text="bob is typing").wait_for(state="hidden")

    send(alice, "hi bob")
    message(bob, "hi bob").wait_for()
    assert alice.locator(".messages b").count() == 0

    bob.reload()
    bob.wait_for_selector("[data-connection][data-state=connected]")
    history = bob.locator(".message[data-id] .body").all_inner_texts()
    assert history[-2:] == ["hello alice, <b>not bold</b>", "hi bob"]
    assert alice.locator(".message[data-id]").count() == 2, "each message is shown once"


def test_two_users_chat_live_with_presence_typing_and_history(split_site, browser_page):
    alice, alice_log = browser_page()
    bob, _ = browser_page()
    log_in(alice, split_site, "alice")
    log_in(bob, split_site, "bob")
    open_room(alice, split_site)
    open_room(bob, split_site)
    assert alice.locator("[data-connection]").get_attribute("data-transport") == "websocket"
    assert alice_log.websockets and all(
        url.startswith(f"{split_site.api.replace('http', 'ws')}/ws/") for url in alice_log.websockets
    )

    chat_both_ways(split_site, alice, bob)
    save_screenshot(alice, "room")


@pytest.mark.parametrize("transport", ["xhr-streaming", "xhr-polling"])
def test_chat_works_over_forced_sockjs_fallbacks(transport, chat_users, daphne_factory, browser_page):
    from scripts.processes import free_port
    from tests.browser.conftest import Site

    port = free_port()
    site, api = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    # WebSocket off at the server (SockJS /info says so), as behind a proxy that breaks WebSockets.
    server = daphne_factory(port=port, SITE_ORIGIN=site, API_ORIGIN=api, FRONTEND_ORIGINS=site,
                            SOCKJS_WEBSOCKET_ENABLED="0")  # fmt: skip
    split = Site(server, site, api)
    query = "" if transport == "xhr-streaming" else f"?transports={transport}"
    alice, alice_log = browser_page()
    bob, _ = browser_page()
    log_in(alice, split, "alice")
    log_in(bob, split, "bob")
    open_room(alice, split, query=query)
    open_room(bob, split, query=query)
    assert alice.locator("[data-connection]").get_attribute("data-transport") == transport
    assert alice_log.websockets == [], "no WebSocket was tried"
    # Issue 16 item 4: every session request carries the server-issued key and a 32-character id.
    session_urls = [url for url in alice_log.requests if re.search(r"/ws/[^/?]+/[^/?]+/xhr", url)]
    assert session_urls
    for url in session_urls:
        session_id = urlsplit(url).path.split("/")[3]
        assert len(session_id) == 32 and len(parse_qs(urlsplit(url).query)["key"][0]) == 43, url

    chat_both_ways(split, alice, bob)
    save_screenshot(alice, f"room-{transport}")


def test_a_mention_shows_a_toast_and_is_replayed_when_the_page_is_reopened(split_site, browser_page):
    alice, _ = browser_page()
    bob, bob_log = browser_page()
    log_in(alice, split_site, "alice")
    log_in(bob, split_site, "bob")
    bob.wait_for_selector("[data-bell][data-stream=open]")
    open_room(alice, split_site)

    send(alice, "@bob have a look at this")
    toast = bob.locator(".toast[data-kind=mention]")
    toast.wait_for(timeout=TOAST_WAIT_MS)
    assert "alice mentioned you in Lobby" in toast.inner_text()
    assert "have a look at this" in toast.inner_text()
    bob.locator("[data-bell-count]", has_text="1").wait_for()

    # Close bob's page and open a new one: the unread notification is there again.
    context = bob.context
    bob.close()
    again = context.new_page()
    bob_log.attach(again)
    again.goto(split_site.url("/"))
    again.locator("[data-bell-count]", has_text="1").wait_for(timeout=WAIT_MS)
    again.get_by_role("button", name="Notifications, 1 unread").click()
    item = again.locator("[data-bell-list] li.unread[data-kind=mention]")
    item.wait_for()
    assert "have a look at this" in item.inner_text()
    item.get_by_role("link").click()  # opens the room and marks it read
    again.wait_for_url(split_site.url("/rooms/lobby/"))
    again.locator("[data-bell-count]").wait_for(state="hidden")
