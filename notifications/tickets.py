"""Who is opening a stream: a single-use ticket, a Bearer header, or the Django session cookie.

``EventSource`` cannot send an ``Authorization`` header, and a long-lived access token must never sit in
a URL (server logs, browser history, Referer). A browser therefore trades its JWT for a ticket at
``POST /api/notifications/ticket/`` and opens ``stream/?ticket=...``: the ticket is stored only as a
hash, lives ``SSE_TICKET_TTL`` seconds and is redeemed atomically, once, across all processes.
Same-site pages may rely on the session cookie instead; non-browser clients may send a Bearer header.
These functions block (database): call them through ``database_sync_to_async``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AbstractBaseUser

from accounts.models import OneTimeCode

if TYPE_CHECKING:
    from django.contrib.auth.models import User
from accounts.services import CodeRejected, one_time_code_issue, one_time_code_redeem
from accounts.tokens import TokenRejected, authenticate_access_token


@dataclass(frozen=True)
class StreamUnauthorized(Exception):
    """No usable credentials; ``code`` is machine-readable, ``detail`` is for the developer in devtools."""

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


def stream_ticket_issue(*, user: AbstractBaseUser) -> str:
    """A new single-use stream ticket for ``user``."""
    return one_time_code_issue(
        user=cast("User", user), purpose=OneTimeCode.Purpose.SSE_TICKET, ttl_seconds=settings.SSE_TICKET_TTL
    )


def _session_user(session_key: str) -> AbstractBaseUser | None:
    engine: Any = import_module(settings.SESSION_ENGINE)
    session = engine.SessionStore(session_key)
    # django.contrib.auth.get_user checks the backend, the session hash (a password change logs the
    # session out) and is_active, exactly as for a Django view.
    user = get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
    return user if user.is_authenticated else None


def stream_user_resolve(*, ticket: str | None, bearer: str | None, session_key: str | None) -> AbstractBaseUser:
    """The stream's user, or StreamUnauthorized. A given but bad credential never falls back to another."""
    if ticket is not None:
        try:
            return one_time_code_redeem(code=ticket, purpose=OneTimeCode.Purpose.SSE_TICKET)
        except CodeRejected:
            raise StreamUnauthorized(
                "ticket-rejected",
                "the stream ticket is unknown, already used or expired: get a new one from "
                "POST /api/notifications/ticket/ for each connection",
            ) from None
    if bearer is not None:
        try:
            return authenticate_access_token(bearer).user
        except TokenRejected as exc:
            raise StreamUnauthorized(exc.code, exc.reason) from None
    if session_key:
        user = _session_user(session_key)
        if user is not None:
            return user
        raise StreamUnauthorized("session-invalid", "the session cookie does not belong to a logged-in user")
    raise StreamUnauthorized(
        "unauthorized",
        "credentials required: pass ?ticket= (from POST /api/notifications/ticket/), "
        "or send the session cookie (withCredentials: true)",
    )
