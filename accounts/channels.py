"""Channels middleware for WebSocket handshakes: the origin check and the handshake user.

The handshake never demands credentials (an HTTP-level auth filter blocking /ws/ handshakes was one of
the field failures); it only resolves who is there, from an ``Authorization: Bearer`` header (clients
that can send one) or the Django session cookie. STOMP CONNECT is where authentication is enforced.
"""

from __future__ import annotations

import logging

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from accounts.tokens import TokenRejected, authenticate_access_token, parse_bearer
from chatproject.origins import origin_matcher

logger = logging.getLogger(__name__)


def scope_header(scope: dict, name: bytes) -> str | None:
    """The first value of a header in an ASGI scope, decoded as latin-1, or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


# Every handshake without credentials shares one: AnonymousUser holds no state.
ANONYMOUS = AnonymousUser()


class WebSocketHandshake:
    """The WebSocket handshake stack in one layer: the Origin check, then the handshake user.

    Origin: a present Origin that is not in FRONTEND_ORIGINS is refused (close 4403, an HTTP 403 to the
    browser) and logged; a missing one is allowed: only browsers send one, and non-browser clients still
    have to authenticate on CONNECT. This is the defence against cross-site WebSocket hijacking.

    User: the session-cookie user (only when the request carries the session cookie), then an
    ``Authorization: Bearer`` header, which wins when valid; ``handshake_auth`` holds that token's
    result and ``handshake_auth_error`` why it was refused.

    The call is not ``async``: with neither header (every browser: its STOMP CONNECT carries the JWT) it
    copies the scope once and returns the inner application's coroutine, so nothing of this layer stays
    alive for the connection's lifetime. Channels' middlewares each keep a scope copy and a suspended
    frame per connection (about 2.8 kB per idle connection for the stack this replaces).
    """

    def __init__(self, inner, *, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.inner = inner
        self.exempt_prefixes = exempt_prefixes
        # The cookie path: Channels' cookie, session and auth middlewares, then the Bearer header.
        self.with_session = AuthMiddlewareStack(self._bearer_then_inner)

    def __call__(self, scope, receive, send):
        origin = scope_header(scope, b"origin")
        if origin is not None and not self._exempt(scope) and not origin_matcher().allows(origin):
            logger.warning("refused WebSocket handshake to %s from origin %r", scope.get("path"), origin)
            return self._refuse(receive, send)
        cookies = scope_header(scope, b"cookie") or ""
        if f"{settings.SESSION_COOKIE_NAME}=" in cookies:
            return self.with_session(scope, receive, send)
        return self._bearer_then_inner(scope, receive, send)

    def _exempt(self, scope) -> bool:
        return bool(self.exempt_prefixes) and scope.get("path", "").startswith(self.exempt_prefixes)

    @staticmethod
    async def _refuse(receive, send) -> None:
        await receive()  # the websocket.connect message
        await send({"type": "websocket.close", "code": 4403})

    def _bearer_then_inner(self, scope, receive, send):
        token = parse_bearer(scope_header(scope, b"authorization"))
        if token:
            return self._authenticate(scope, token, receive, send)
        scope = {**scope, "handshake_auth": None}
        scope.setdefault("user", ANONYMOUS)
        return self.inner(scope, receive, send)

    async def _authenticate(self, scope, token: str, receive, send):
        scope = {**scope, "handshake_auth": None}
        try:
            authenticated = await database_sync_to_async(authenticate_access_token)(token)
        except TokenRejected as exc:
            scope["handshake_auth_error"] = exc
        else:
            scope["user"] = authenticated.user
            scope["handshake_auth"] = authenticated
        scope.setdefault("user", ANONYMOUS)
        return await self.inner(scope, receive, send)
