"""Where SockJS endpoints are mounted: the STOMP endpoint at /ws and, on demand, the protocol test services.

``new SockJS(API_ORIGIN + '/ws')`` lands here. ``raw_websocket=False`` because the raw STOMP WebSocket at
/ws and /ws/websocket is chat/routing.py's (binary frames, subprotocol negotiation, no SockJS framing).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac

from accounts.addresses import scope_client_address
from chatproject.origins import origin_matcher
from sockjs.endpoint import SockJSEndpoint
from sockjs.testservices import test_endpoints
from stompengine.realtime.sockjs import StompSockJSHandler


def endpoint_options() -> dict[str, Any]:
    """The SOCKJS_* settings as SockJSEndpoint keyword arguments."""
    return {
        "websocket_enabled": settings.SOCKJS_WEBSOCKET_ENABLED,
        "cookie_needed": settings.SOCKJS_COOKIE_NEEDED,
        "heartbeat_interval": settings.SOCKJS_HEARTBEAT_INTERVAL,
        "disconnect_delay": settings.SOCKJS_DISCONNECT_DELAY,
        "response_limit": settings.SOCKJS_RESPONSE_LIMIT,
        "client_url": settings.SOCKJS_CLIENT_URL or f"{settings.STATIC_URL}vendor/sockjs.min.js",
        "queue_limit": settings.SOCKJS_SESSION_QUEUE_LIMIT,
        "body_timeout": settings.SOCKJS_BODY_TIMEOUT,
        "bind_peer": settings.SOCKJS_BIND_PEER,
        # Behind nginx, the address TRUSTED_PROXY_COUNT hops back, as every throttle reads it.
        "peer_address": scope_client_address,
        # Every process must recognise every other's session keys: derived from SECRET_KEY.
        "session_key_secret": salted_hmac("sockjs.session-key", "", algorithm="sha256").digest(),
    }


STOMP_ENDPOINT = SockJSEndpoint(
    "ws", StompSockJSHandler, allowed_origin=origin_matcher().allows, raw_websocket=False, **endpoint_options()
)
http_urlpatterns: list = [*STOMP_ENDPOINT.http_urlpatterns]
websocket_urlpatterns: list = [*STOMP_ENDPOINT.websocket_urlpatterns]

if settings.SOCKJS_TEST_SERVICES:
    _options = endpoint_options()
    for _endpoint in test_endpoints(
        "sockjs-test",
        heartbeat_interval=_options["heartbeat_interval"],
        disconnect_delay=_options["disconnect_delay"],
        client_url=_options["client_url"],
        queue_limit=_options["queue_limit"],
        body_timeout=_options["body_timeout"],
    ):
        http_urlpatterns += _endpoint.http_urlpatterns
        websocket_urlpatterns += _endpoint.websocket_urlpatterns
