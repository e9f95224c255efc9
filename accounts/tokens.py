"""JWT access-token checks shared by every entry point that cannot use DRF: WebSocket, STOMP, SSE."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken


@dataclass(frozen=True)
class TokenRejected(Exception):
    """A token that does not authenticate anyone; ``code`` is machine-readable, ``reason`` for people."""

    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


@dataclass(frozen=True)
class AuthenticatedToken:
    user: AbstractBaseUser
    expires_at: datetime


def parse_bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <jwt>`` value, or None when it is not one."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate_access_token(raw: str | None) -> AuthenticatedToken:
    """Validate an access token (signature, expiry, type) and load its active user, or raise TokenRejected.

    Blocking (one database query): call it through ``database_sync_to_async`` from async code.
    """
    if not raw:
        raise TokenRejected("unauthorized", "no access token was given")
    try:
        token = AccessToken(raw)  # type: ignore[arg-type]  # the stubs miss that it takes the encoded token
    except TokenError as exc:
        message = str(exc)
        code = "token-expired" if "expired" in message.lower() else "token-invalid"
        raise TokenRejected(code, message) from None
    user_id = token.get(api_settings.USER_ID_CLAIM)
    if user_id is None:
        raise TokenRejected("token-invalid", "the token names no user")
    user = get_user_model().objects.filter(**{api_settings.USER_ID_FIELD: user_id}).first()
    if user is None:
        raise TokenRejected("unauthorized", "the token's user no longer exists")
    if not user.is_active:
        raise TokenRejected("unauthorized", "the token's user is deactivated")
    expires_at = datetime.fromtimestamp(int(token["exp"]), tz=UTC)
    return AuthenticatedToken(user=user, expires_at=expires_at)
