"""Bridge for today's engine, which imports ``accounts.tokens`` itself: delete once STOMP_AUTHENTICATOR is read.

Until the engine calls the configured authenticator (issue 18's pluggable ``STOMP_AUTHENTICATOR``), its
connection authenticates a CONNECT's token through this module's three names. They hand the token to the
example's own authenticator (echo/auth.py), so the example's logic is already written against the contract.
Today a CONNECT must carry a token (passcode or ``Authorization: Bearer``); anonymous CONNECTs need the new path.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from echo.auth import EchoAuthenticator, Principal, Refused

TokenRejected = Refused


def parse_bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, or None."""
    scheme, _, token = (value or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate_access_token(raw: str) -> Principal:
    """Called by the engine in a worker thread with the CONNECT's token."""
    return async_to_sync(EchoAuthenticator().authenticate)({"passcode": raw}, {})
