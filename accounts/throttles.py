"""Throttles against password guessing: per client address (a rate) and per account and address (a back-off).

Both take the client address from ``accounts.addresses.client_address``, which trusts X-Forwarded-For only
as far as ``TRUSTED_PROXY_COUNT`` proxies go.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, BaseThrottle

from accounts import lockout
from accounts.addresses import client_address


class AuthRateThrottle(AnonRateThrottle):
    """Per client address, for every endpoint that accepts a password (AUTH_THROTTLE_RATE)."""

    scope = "auth"

    def get_rate(self) -> str:
        return settings.AUTH_THROTTLE_RATE

    def allow_request(self, request, view) -> bool:
        # Re-read the rate so that settings overrides (tests, reconfiguration) take effect.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_ident(self, request) -> str:
        return client_address(request)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def login_username(request) -> str:
    """The account a login request names (JSON or form body); '' when it names none."""
    data = getattr(request, "data", None)
    if data is None:
        data = request.POST
    value = data.get("username", "") if hasattr(data, "get") else ""
    return value[:150] if isinstance(value, str) else ""


class AccountLockoutThrottle(BaseThrottle):
    """Refuses a password for an account that failed too often from this address lately (``accounts.lockout``)."""

    def __init__(self) -> None:
        self._wait = 0

    def allow_request(self, request, view) -> bool:
        username = login_username(request)
        self._wait = lockout.login_wait(username=username, address=client_address(request)) if username else 0
        return self._wait == 0

    def wait(self) -> float | None:
        return self._wait or None
