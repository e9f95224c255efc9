"""``SockJSEndpoint``: one SockJS service under a URL prefix, as Channels routes for HTTP and WebSocket.

Usage (any Channels project)::

    endpoint = SockJSEndpoint("ws", MyHandler, allowed_origin=origin_matcher().allows)
    http_routes = endpoint.http_urlpatterns          # before Django's catch-all in the HTTP router
    websocket_routes = endpoint.websocket_urlpatterns

``MyHandler(session)`` must provide ``async on_open()``, ``async on_message(text)`` and
``async on_close()`` (see :class:`sockjs.session.Handler`); it talks back through
``session.send(text)``, ``session.send_many(texts)`` and ``session.close(code, reason)``, and finds
the opening request's ASGI scope (headers, client, user) in ``session.scope`` and the transport name
in ``session.transport``.

Every path under the prefix is answered by the endpoint (unknown ones with 404), so a request there
can never fall through to a Django view, a login redirect or an authentication layer.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from django.urls import re_path

from sockjs import protocol
from sockjs.binding import KeyIssuer, PeerAddress
from sockjs.session import HandlerFactory, SessionRegistry

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL = 25.0
DEFAULT_DISCONNECT_DELAY = 5.0
DEFAULT_RESPONSE_LIMIT = 128 * 1024
DEFAULT_QUEUE_LIMIT = 10_000
DEFAULT_MAX_REQUEST_BODY = 1024 * 1024
DEFAULT_BODY_TIMEOUT = 5.0
DEFAULT_CLIENT_URL = "https://cdn.jsdelivr.net/npm/sockjs-client@1.6.1/dist/sockjs.min.js"

# The protocol accepts any server and session id except empty ones and ones with dots or slashes.
_ID = r"[^/.]+"
SESSION_TRANSPORTS = (
    "xhr",
    "xhr_send",
    "xhr_streaming",
    "eventsource",
    "htmlfile",
    "jsonp",
    "jsonp_send",
    "websocket",
)


def any_origin(origin: str | None) -> bool:
    """An ``allowed_origin`` that accepts every origin (the protocol's test services do)."""
    return True


class SockJSEndpoint:
    """A SockJS service mounted at ``/<prefix>``; build once at import time of the routing module."""

    def __init__(
        self,
        prefix: str,
        handler_factory: HandlerFactory,
        *,
        allowed_origin: Callable[[str | None], bool] = any_origin,
        websocket_enabled: bool = True,
        cookie_needed: bool = False,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        disconnect_delay: float = DEFAULT_DISCONNECT_DELAY,
        response_limit: int = DEFAULT_RESPONSE_LIMIT,
        client_url: str = DEFAULT_CLIENT_URL,
        raw_websocket: bool = True,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        max_request_body: int = DEFAULT_MAX_REQUEST_BODY,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        session_key_secret: bytes | None = None,
        bind_peer: bool = True,
        peer_address: PeerAddress | None = None,
    ) -> None:
        self.prefix = prefix.strip("/")
        if not self.prefix:
            raise ValueError("a SockJS prefix cannot be empty: the endpoint owns every path under it")
        if heartbeat_interval <= 0 or disconnect_delay <= 0 or body_timeout <= 0:
            raise ValueError("heartbeat_interval, disconnect_delay and body_timeout must be positive")
        self.handler_factory = handler_factory
        self.allowed_origin = allowed_origin
        self.websocket_enabled = websocket_enabled
        self.cookie_needed = cookie_needed
        self.heartbeat_interval = heartbeat_interval
        self.disconnect_delay = disconnect_delay
        self.response_limit = response_limit
        self.raw_websocket = raw_websocket
        self.queue_limit = queue_limit
        self.max_request_body = max_request_body
        self.body_timeout = body_timeout
        self.bind_peer = bind_peer
        # Behind a proxy the socket peer is the proxy: the project passes its trusted-hops rule here.
        self.peer_address = peer_address
        # Without a shared secret each process recognises only its own keys: fine for one process, but
        # behind a balancer the key request and the session may reach different processes.
        self.keys = KeyIssuer(session_key_secret or secrets.token_bytes(32))
        self.iframe = protocol.IframePage.build(client_url)
        self.sessions = SessionRegistry()

    def __repr__(self) -> str:
        return f"<SockJSEndpoint /{self.prefix}>"

    def session_options(self) -> dict[str, Any]:
        """Keyword arguments for a new :class:`sockjs.session.Session` of this endpoint."""
        return {"handler_factory": self.handler_factory, "queue_limit": self.queue_limit}

    @property
    def http_urlpatterns(self) -> list[Any]:
        """HTTP routes: greeting, info, iframe, session transports, then 404 for the rest of the prefix."""
        from sockjs import consumers

        p = re.escape(self.prefix)
        transports = "|".join(SESSION_TRANSPORTS)
        return [
            re_path(rf"^{p}/?$", consumers.GreetingConsumer.as_asgi(endpoint=self)),
            re_path(rf"^{p}/info$", consumers.InfoConsumer.as_asgi(endpoint=self)),
            re_path(rf"^{p}/key$", consumers.KeyConsumer.as_asgi(endpoint=self)),
            re_path(rf"^{p}/iframe[0-9a-z_.-]*\.html$", consumers.IframeConsumer.as_asgi(endpoint=self)),
            re_path(rf"^{p}/websocket$", consumers.WebsocketOverHttpConsumer.as_asgi(endpoint=self, raw=True)),
            re_path(
                rf"^{p}/(?P<server_id>{_ID})/(?P<session_id>{_ID})/(?P<transport>{transports})$",
                consumers.TransportConsumer.as_asgi(endpoint=self),
            ),
            re_path(rf"^{p}/", consumers.NotFoundConsumer.as_asgi(endpoint=self)),
        ]

    @property
    def websocket_urlpatterns(self) -> list[Any]:
        """WebSocket routes: the SockJS-framed session socket and, if enabled, the raw one."""
        from sockjs import consumers

        p = re.escape(self.prefix)
        routes = [
            re_path(
                rf"^{p}/(?P<server_id>{_ID})/(?P<session_id>{_ID})/websocket$",
                consumers.SockJSWebsocketConsumer.as_asgi(endpoint=self),
            )
        ]
        if self.raw_websocket:
            routes.append(re_path(rf"^{p}/websocket$", consumers.RawWebsocketConsumer.as_asgi(endpoint=self)))
        return routes
