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


def access_token_claims(raw: str | None) -> tuple[str, datetime]:
    """The user id an access token names and when it expires, once its signature, expiry and type hold
    (no database read), or TokenRejected."""
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
    return str(user_id), datetime.fromtimestamp(int(token["exp"]), tz=UTC)


def users_by_token_id(user_ids: list[str]) -> dict[str, AbstractBaseUser]:
    """The users that tokens name, by the id as ``access_token_claims`` gives it (one query for many)."""
    field = api_settings.USER_ID_FIELD
    users = get_user_model().objects.filter(**{f"{field}__in": sorted(set(user_ids))})
    return {str(getattr(user, field)): user for user in users}


def token_user_check(user: AbstractBaseUser | None) -> AbstractBaseUser:
    """The token's user if it may still sign in, else TokenRejected."""
    if user is None:
        raise TokenRejected("unauthorized", "the token's user no longer exists")
    if not user.is_active:
        raise TokenRejected("unauthorized", "the token's user is deactivated")
    return user


def authenticate_access_token(raw: str | None) -> AuthenticatedToken:
    """Validate an access token (signature, expiry, type) and load its active user, or raise TokenRejected.

    Blocking (one database query): call it through ``database_sync_to_async`` from async code.
    """
    user_id, expires_at = access_token_claims(raw)
    user = get_user_model().objects.filter(**{api_settings.USER_ID_FIELD: user_id}).first()
    return AuthenticatedToken(user=token_user_check(user), expires_at=expires_at)
