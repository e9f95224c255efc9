"""Who is opening a stream: a single-use ticket, a Bearer header, or the Django session cookie.

``EventSource`` cannot send an ``Authorization`` header, and a long-lived access token must never sit in
a URL (server logs, browser history, Referer). A browser therefore trades its JWT for a ticket at
``POST /api/notifications/ticket/`` and opens ``stream/?ticket=...``: the ticket is stored only as a
hash, lives ``SSE_TICKET_TTL`` seconds (never past the access token that bought it) and is redeemed
atomically, once, across all processes. The ticket remembers when that access token expires: the stream
it opens ends then (the page buys a new ticket with a refreshed token and resumes with last_event_id).
Same-site pages may rely on the session cookie instead; non-browser clients may send a Bearer header.
These functions block (database): call them through ``database_sync_to_async``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from accounts.models import OneTimeCode

if TYPE_CHECKING:
    from django.contrib.auth.models import User
from accounts.services import CodeRejected, one_time_code_claim, one_time_code_issue
from accounts.tokens import TokenRejected, authenticate_access_token
from operations import metrics


@dataclass(frozen=True)
class StreamUnauthorized(Exception):
    """No usable credentials; ``code`` is machine-readable, ``detail`` is for the developer in devtools."""

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(frozen=True)
class StreamIdentity:
    """Who opened a stream, and when the credential they used runs out (None: never on its own)."""

    user: AbstractBaseUser
    expires_at: datetime | None


class TooManyTickets(Exception):
    """The user already holds as many unused tickets as they may have open streams."""


def stream_ticket_issue(*, user: AbstractBaseUser, access_expires: datetime | None = None) -> str:
    """A new single-use stream ticket for ``user``, bought with an access token expiring at ``access_expires``.

    Refused (TooManyTickets) while the user holds ``SSE_MAX_STREAMS_PER_USER`` unused, unexpired tickets:
    a page redeems its ticket at once, so only a client hoarding tickets ever meets this.
    """
    unused = OneTimeCode.objects.filter(
        user_id=user.pk, purpose=OneTimeCode.Purpose.SSE_TICKET, used__isnull=True, expires__gt=timezone.now()
    )
    if unused.count() >= settings.SSE_MAX_STREAMS_PER_USER:
        metrics.TICKET_BY_OUTCOME["refused"].inc()
        raise TooManyTickets()
    metrics.TICKET_BY_OUTCOME["issued"].inc()
    return one_time_code_issue(
        user=cast("User", user),
        purpose=OneTimeCode.Purpose.SSE_TICKET,
        ttl_seconds=settings.SSE_TICKET_TTL,
        not_after=access_expires,
    )


def _session_user(session_key: str) -> tuple[AbstractBaseUser, datetime] | None:
    engine: Any = import_module(settings.SESSION_ENGINE)
    session = engine.SessionStore(session_key)
    # django.contrib.auth.get_user checks the backend, the session hash (a password change logs the
    # session out) and is_active, exactly as for a Django view.
    user = get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
    return (user, session.get_expiry_date()) if user.is_authenticated else None


def stream_identity_resolve(*, ticket: str | None, bearer: str | None, session_key: str | None) -> StreamIdentity:
    """The stream's user and expiry, or StreamUnauthorized. A given but bad credential never falls back."""
    if ticket is not None:
        try:
            entry = one_time_code_claim(code=ticket, purpose=OneTimeCode.Purpose.SSE_TICKET)
            metrics.TICKET_BY_OUTCOME["redeemed"].inc()
            return StreamIdentity(entry.user, entry.access_expires)
        except CodeRejected:
            metrics.TICKET_BY_OUTCOME["rejected"].inc()
            raise StreamUnauthorized(
                "ticket-rejected",
                "the stream ticket is unknown, already used or expired: get a new one from "
                "POST /api/notifications/ticket/ for each connection",
            ) from None
    if bearer is not None:
        try:
            authenticated = authenticate_access_token(bearer)
            return StreamIdentity(authenticated.user, authenticated.expires_at)
        except TokenRejected as exc:
            raise StreamUnauthorized(exc.code, exc.reason) from None
    if session_key:
        found = _session_user(session_key)
        if found is not None:
            return StreamIdentity(*found)
        raise StreamUnauthorized("session-invalid", "the session cookie does not belong to a logged-in user")
    raise StreamUnauthorized(
        "unauthorized",
        "credentials required: pass ?ticket= (from POST /api/notifications/ticket/), "
        "or send the session cookie (withCredentials: true)",
    )


def stream_user_resolve(*, ticket: str | None, bearer: str | None, session_key: str | None) -> AbstractBaseUser:
    """The stream's user only (see ``stream_identity_resolve``)."""
    return stream_identity_resolve(ticket=ticket, bearer=bearer, session_key=session_key).user
