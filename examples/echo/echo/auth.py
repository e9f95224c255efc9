"""The example's authenticator: anyone may connect anonymously, or as "echo" with the settings' ECHO_TOKEN.

It implements the engine's authenticator contract (``STOMP_AUTHENTICATOR``, a dotted path):
``async authenticate(connect_headers, scope)`` returns the principal of a CONNECT, or raises to refuse it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from stompengine.auth import AuthenticationFailed, Principal


@dataclass(frozen=True)
class Visitor:
    """Who is connected: ``pk`` keys per-user limits and /user/ destinations, the name goes into CONNECTED."""

    pk: str
    username: str

    def get_username(self) -> str:
        return self.username


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
            return Principal(user=Visitor(pk=anonymous, username=anonymous), user_id=anonymous, expires_at=_tomorrow())
        if secrets.compare_digest(token, settings.ECHO_TOKEN):
            return Principal(user=Visitor(pk="echo", username="echo"), user_id="echo", expires_at=_tomorrow())
        raise AuthenticationFailed(
            "token-invalid", "unknown token: connect anonymously or with the example's ECHO_TOKEN"
        )


def _tomorrow() -> datetime:
    return timezone.now() + timedelta(days=1)
