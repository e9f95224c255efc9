"""Route shape of SockJSEndpoint: anchored patterns under the prefix only, and the options that add routes."""

from __future__ import annotations

import pytest

from sockjs.endpoint import SockJSEndpoint
from sockjs.testservices import EchoHandler


def matches(routes, path: str) -> bool:
    return any(route.pattern.match(path.lstrip("/")) for route in routes)


def test_http_routes_cover_exactly_the_prefix():
    endpoint = SockJSEndpoint("/ws/", EchoHandler)
    routes = endpoint.http_urlpatterns
    for path in ["/ws", "/ws/", "/ws/info", "/ws/iframe.html", "/ws/000/abc/xhr", "/ws/anything/else"]:
        assert matches(routes, path), path
    for path in ["/wsx", "/wsx/info", "/api/ws/info", "/w", "/"]:
        assert not matches(routes, path), path


def test_websocket_routes_and_the_raw_websocket_option():
    with_raw = SockJSEndpoint("ws", EchoHandler).websocket_urlpatterns
    without_raw = SockJSEndpoint("ws", EchoHandler, raw_websocket=False).websocket_urlpatterns
    assert matches(with_raw, "/ws/000/abc/websocket") and matches(without_raw, "/ws/000/abc/websocket")
    assert matches(with_raw, "/ws/websocket")
    # The project's raw STOMP consumer owns /ws/websocket; the endpoint then leaves it alone.
    assert not matches(without_raw, "/ws/websocket")
    assert not matches(with_raw, "/ws") and not matches(with_raw, "/ws/a./b/websocket")


def test_prefix_and_timers_are_validated():
    with pytest.raises(ValueError, match="prefix"):
        SockJSEndpoint("/", EchoHandler)
    with pytest.raises(ValueError, match="positive"):
        SockJSEndpoint("ws", EchoHandler, heartbeat_interval=0)
