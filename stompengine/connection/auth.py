"""Authentication of a connection: CONNECT and re-authentication through the configured authenticator.

The engine knows no credential format: it hands the CONNECT frame's credential headers and the transport's
scope to the authenticator (``stompengine.auth``) and turns its ``AuthenticationFailed`` into the
ERROR a client sees (``message:Unauthorized``, the failure's ``code``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from stompengine.auth import AuthenticationFailed, Authenticator, Principal
from stompengine.realtime.registry import Denied
from stompengine.stomp.session import ConnectRequested

logger = logging.getLogger(__name__)


def connect_headers(event: ConnectRequested) -> dict[str, str]:
    """The credential headers of a CONNECT frame by lower-case name (the ones it carried)."""
    found = {"authorization": event.authorization, "passcode": event.passcode, "login": event.login,
             "host": event.host}  # fmt: skip
    return {name: value for name, value in found.items() if value is not None}


async def authenticate_connect(
    authenticator: Authenticator, event: ConnectRequested, scope: Mapping[str, Any]
) -> Principal:
    """The principal of a CONNECT, or ``Denied`` (``Unauthorized`` with the authenticator's code)."""
    try:
        return await authenticator.authenticate(connect_headers(event), scope)
    except AuthenticationFailed as exc:
        logger.info("STOMP CONNECT refused (%s: %s)", exc.code, exc.detail)
        raise Denied("Unauthorized", exc.detail, code=exc.code) from None


async def reauthenticate(
    authenticator: Authenticator, headers: Mapping[str, str], scope: Mapping[str, Any], current: Principal
) -> Principal:
    """The new principal for a live connection's fresh credentials: the same user only, else ``Denied``."""
    try:
        principal = await authenticator.authenticate(headers, scope)
    except AuthenticationFailed as exc:
        raise Denied("Unauthorized", exc.detail, code=exc.code) from None
    if principal.user_id != current.user_id:
        raise Denied("Unauthorized", "the new credentials belong to another user", code="unauthorized")
    return principal
