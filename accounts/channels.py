"""Channels middleware for WebSocket handshakes: the origin check and the handshake user.

The handshake never demands credentials (an HTTP-level auth filter blocking /ws/ handshakes was one of
the field failures); it only resolves who is there, from an ``Authorization: Bearer`` header (clients
that can send one) or the Django session cookie. STOMP CONNECT is where authentication is enforced.
"""

from __future__ import annotations

import logging

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
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


class OriginCheckMiddleware(BaseMiddleware):
    """Refuse (HTTP 403) a WebSocket handshake whose Origin is present and not in FRONTEND_ORIGINS.

    A missing Origin is allowed: only browsers send one, and non-browser clients still have to
    authenticate on CONNECT. This is the defence against cross-site WebSocket hijacking.
    """

    def __init__(self, inner, *, exempt_prefixes: tuple[str, ...] = ()) -> None:
        super().__init__(inner)
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope, receive, send):
        origin = scope_header(scope, b"origin")
        exempt = scope.get("path", "").startswith(self.exempt_prefixes) if self.exempt_prefixes else False
        if origin is not None and not exempt and not origin_matcher().allows(origin):
            logger.warning("refused WebSocket handshake to %s from origin %r", scope.get("path"), origin)
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": 4403})
            return None
        return await super().__call__(scope, receive, send)


class _BearerMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        token = parse_bearer(scope_header(scope, b"authorization"))
        scope = dict(scope)
        scope["handshake_auth"] = None
        if token:
            try:
                authenticated = await database_sync_to_async(authenticate_access_token)(token)
            except TokenRejected as exc:
                scope["handshake_auth_error"] = exc
            else:
                scope["user"] = authenticated.user
                scope["handshake_auth"] = authenticated
        if "user" not in scope:
            scope["user"] = AnonymousUser()
        return await super().__call__(scope, receive, send)


class _SessionUserMiddleware(BaseMiddleware):
    """The session-cookie user, looked up only when the request carries the session cookie.

    Channels' AuthMiddleware resolves the user on every handshake through the one database thread of
    the process, cookie or not; under load (the soak) handshakes queued behind chat writes there for
    longer than clients wait, and no STOMP client needs it: CONNECT authenticates with the JWT.
    """

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.with_session = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        cookies = scope_header(scope, b"cookie") or ""
        if f"{settings.SESSION_COOKIE_NAME}=" in cookies:
            return await self.with_session(scope, receive, send)
        return await super().__call__(scope, receive, send)


def HandshakeAuthMiddleware(inner):  # noqa: N802 - a middleware factory, named like the class it builds
    """Session-cookie user first (when there is a session cookie), then a Bearer header (which wins when valid)."""
    return _SessionUserMiddleware(_BearerMiddleware(inner))
