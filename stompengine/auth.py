"""Pluggable authentication: what an authenticator is given, what it returns, how it refuses.

The project names its authenticator in ``settings.STOMP_AUTHENTICATOR`` (a dotted path to a class, which is
instantiated without arguments, or to an object). The engine calls it for every CONNECT and for every
re-authentication of a live connection (an application handler calling ``ctx.reauthenticate``)::

    class MyAuthenticator:
        async def authenticate(self, headers: Mapping[str, str], scope: Mapping[str, Any]) -> Principal:
            user = await lookup(headers.get("authorization"))
            if user is None:
                raise AuthenticationFailed("unauthorized", "no such user")
            return Principal(user=user, user_id=user.pk, expires_at=None)

``headers`` are the CONNECT frame's credential headers by lower-case name (``authorization``,
``passcode``, ``login``, ``host``; absent ones are left out); ``scope`` is the ASGI scope of the
transport (what the handshake middleware found: cookies, a handshake token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


class AuthenticationFailed(Exception):
    """Refuse a CONNECT (or a re-authentication): ERROR ``message:Unauthorized`` with ``code``, then close."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a connection acts for: the user object handlers see, its id, and when the credential expires.

    ``user`` needs ``get_username()`` (the CONNECTED frame's ``user-name``); ``user_id`` keys the per-user
    limits and ``/user/`` destinations; at ``expires_at`` (None: never) the connection is closed with
    ``code:token-expired`` unless it re-authenticated in time.
    """

    user: Any
    user_id: Any
    expires_at: datetime | None = None


@runtime_checkable
class Authenticator(Protocol):
    """Checks a client's credentials; raises ``AuthenticationFailed`` to refuse."""

    async def authenticate(self, headers: Mapping[str, str], scope: Mapping[str, Any]) -> Principal:
        """The principal of these credentials, or ``AuthenticationFailed``."""
        ...


class NoAuthenticator:
    """The authenticator used when ``STOMP_AUTHENTICATOR`` is not set: every CONNECT is refused, loudly."""

    async def authenticate(self, headers: Mapping[str, str], scope: Mapping[str, Any]) -> Principal:
        """Refuse: no authenticator was configured."""
        raise AuthenticationFailed("unauthorized", "the server has no STOMP_AUTHENTICATOR configured")


def load_authenticator(path: str | None) -> Authenticator:
    """The authenticator a dotted path names (a class is instantiated); ``NoAuthenticator`` for none."""
    if not path:
        return NoAuthenticator()
    from django.utils.module_loading import import_string

    found = import_string(path)
    authenticator = found() if isinstance(found, type) else found
    if not isinstance(authenticator, Authenticator):
        raise TypeError(f"STOMP_AUTHENTICATOR {path!r} has no async authenticate(headers, scope) method")
    return authenticator
