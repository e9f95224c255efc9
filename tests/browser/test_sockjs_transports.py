"""STOMP over every other SockJS transport in a real browser (issue 19 changed the iframe page, the
EventSource content type and the JSONP prefix): eventsource, the iframe transports and jsonp-polling,
with WebSocket off at the server. The conftest fails each test on any console error or failed request."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in
from tests.browser.test_chat import chat_both_ways, open_room

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.mark.parametrize("transport", ["eventsource", "iframe-eventsource", "iframe-htmlfile", "iframe-xhr-polling"])
def test_chat_works_over_every_other_sockjs_transport(transport, chat_users, daphne_factory, browser_page):
    from scripts.processes import free_port
    from tests.browser.conftest import Site

    port = free_port()
    site, api = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    server = daphne_factory(port=port, SITE_ORIGIN=site, API_ORIGIN=api, FRONTEND_ORIGINS=site,
                            SOCKJS_WEBSOCKET_ENABLED="0")  # fmt: skip
    split = Site(server, site, api)
    alice, alice_log = browser_page()
    bob, _ = browser_page()
    log_in(alice, split, "alice")
    log_in(bob, split, "bob")
    open_room(alice, split, query=f"?transports={transport}")
    open_room(bob, split, query=f"?transports={transport}")
    assert alice.locator("[data-connection]").get_attribute("data-transport") == transport
    assert alice_log.websockets == [], "no WebSocket was tried"
    chat_both_ways(split, alice, bob)
