"""This project's STOMP authenticator: a JWT access token in CONNECT, or the WebSocket handshake's.

Configured as ``STOMP_AUTHENTICATOR = "accounts.stomp_auth.JWTAuthenticator"``. A CONNECT carries the
token as ``Authorization: Bearer <jwt>`` (non-browser clients) or ``passcode:<jwt>`` (stomp.js in
browsers, which cannot set that header); with neither, the token of the WebSocket handshake's
``Authorization`` header counts (``accounts.channels.WebSocketHandshake`` checked it already).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser

from accounts.tokens import (
    AuthenticatedToken,
    TokenRejected,
    access_token_claims,
    parse_bearer,
    token_user_check,
    users_by_token_id,
)
from stompengine.auth import AuthenticationFailed, Principal
from stompengine.coalesce import BatchCoalescer

TokenCheck = Callable[[str], Awaitable[AuthenticatedToken]]


async def _users_named(_: str, user_ids: list[str]) -> dict[str, AbstractBaseUser]:
    users: dict[str, AbstractBaseUser] = await database_sync_to_async(users_by_token_id, thread_sensitive=False)(
        user_ids
    )
    return users


# A reconnect storm is thousands of CONNECTs within seconds: the users of the tokens checked together are
# loaded in one read (on a worker thread, not the one database thread), each token's user checked on its own.
_token_users = BatchCoalescer(_users_named, lambda _, users, user_id: token_user_check(users.get(user_id)))


async def check_access_token(raw: str) -> AuthenticatedToken:
    """Validate an access token (no read) and load its user, read together with the other CONNECTs' users
    of the moment, so a reconnect storm's CONNECTs do not each cost a query on the one database thread."""
    user_id, expires_at = access_token_claims(raw)
    return AuthenticatedToken(user=await _token_users.fetch("users", user_id), expires_at=expires_at)


class JWTAuthenticator:
    """``authenticate(headers, scope)`` for JWT access tokens; refusals carry ``TokenRejected``'s code."""

    def __init__(self, check: TokenCheck | None = None) -> None:
        self._check = check or check_access_token

    async def authenticate(self, headers: Mapping[str, str], scope: Mapping[str, Any]) -> Principal:
        """The token's user and expiry, or ``AuthenticationFailed`` (``token-invalid``, ``token-expired``…)."""
        try:
            authenticated = await self._authenticated(headers, scope)
        except TokenRejected as exc:
            raise AuthenticationFailed(exc.code, exc.reason) from None
        return Principal(user=authenticated.user, user_id=authenticated.user.pk, expires_at=authenticated.expires_at)

    async def _authenticated(self, headers: Mapping[str, str], scope: Mapping[str, Any]) -> AuthenticatedToken:
        authorization = headers.get("authorization")
        if authorization is not None:
            token = parse_bearer(authorization)
            if token is None:
                raise TokenRejected("token-invalid", "the Authorization header is not 'Bearer <token>'")
            return await self._check(token)
        passcode = (headers.get("passcode") or "").strip()
        if passcode:
            return await self._check(parse_bearer(passcode) or passcode)
        handshake = scope.get("handshake_auth")
        if handshake is not None:
            # The WebSocket handshake carried a valid Authorization: Bearer header (non-browser clients).
            return handshake  # type: ignore[no-any-return]
        handshake_error = scope.get("handshake_auth_error")
        if handshake_error is not None:
            raise handshake_error
        raise TokenRejected(
            "unauthorized", "no access token: send 'Authorization: Bearer <jwt>' (or passcode:<jwt>) in CONNECT"
        )
