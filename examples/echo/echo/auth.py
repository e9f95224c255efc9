"""The example's authenticator: anyone may connect anonymously, or as "echo" with the settings' ECHO_TOKEN.

It implements the engine's authenticator contract (``STOMP_AUTHENTICATOR``, a dotted path):
``async authenticate(connect_headers, scope)`` returns the principal of a CONNECT, or raises to refuse it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone


@dataclass(frozen=True)
class Visitor:
    """Who is connected: ``pk`` keys per-user limits and /user/ destinations, the name goes into CONNECTED."""

    pk: str
    username: str

    def get_username(self) -> str:
        return self.username


@dataclass(frozen=True)
class Principal:
    user: Visitor
    expires_at: datetime = field(default_factory=lambda: timezone.now() + timedelta(days=1))


class Refused(Exception):
    """A CONNECT with a token other than ECHO_TOKEN."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason


class EchoAuthenticator:
    async def authenticate(self, connect_headers: dict[str, str], scope: dict[str, Any]) -> Principal:
        token = connect_headers.get("passcode") or ""
        if token.lower().startswith("bearer "):
            token = token[len("bearer ") :]
        authorization = connect_headers.get("authorization") or ""
        if authorization.lower().startswith("bearer "):
            token = authorization[len("bearer ") :]
        if not token:
            anonymous = f"anonymous-{secrets.token_hex(6)}"
            return Principal(Visitor(pk=anonymous, username=anonymous))
        if secrets.compare_digest(token, settings.ECHO_TOKEN):
            return Principal(Visitor(pk="echo", username="echo"))
        raise Refused("token-invalid", "unknown token: connect anonymously or with the example's ECHO_TOKEN")
