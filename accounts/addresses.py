"""The client's address, the one answer every throttle and the login back-off use.

Each reverse proxy appends the address it saw to ``X-Forwarded-For`` (nginx's ``$proxy_add_x_forwarded_for``
keeps whatever the client sent in front). With ``TRUSTED_PROXY_COUNT`` = N, the client is the N-th entry
from the right; entries further left were written by the client and prove nothing. ``REMOTE_ADDR`` is used
with no proxy, and when the header is missing. (daphne's ``--proxy-headers`` puts the header's FIRST entry,
the client's own claim, into ``REMOTE_ADDR``: with a proxy in front, this module reads the header itself.)
"""

from __future__ import annotations

from django.conf import settings


def forwarded_client(*, remote_addr: str, forwarded_for: str | None, trusted_proxies: int) -> str:
    """The client address given the socket peer, the X-Forwarded-For header and the trusted proxy count."""
    if trusted_proxies <= 0 or not forwarded_for:
        return remote_addr
    hops = [entry.strip() for entry in forwarded_for.split(",") if entry.strip()]
    if not hops:
        return remote_addr
    return hops[-min(trusted_proxies, len(hops))]


def scope_client_address(scope: dict) -> str | None:
    """The client address of an ASGI scope (SockJS session binding), by the same rule as ``client_address``."""
    client = scope.get("client")
    forwarded = next((value for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"), None)
    return (
        forwarded_client(
            remote_addr=str(client[0]) if client else "",
            forwarded_for=forwarded.decode("latin-1") if forwarded is not None else None,
            trusted_proxies=settings.TRUSTED_PROXY_COUNT,
        )
        or None
    )


def client_address(request) -> str:
    """The client address of a Django or DRF request (see the module docstring)."""
    meta = request.META
    return forwarded_client(
        remote_addr=meta.get("REMOTE_ADDR") or "",
        forwarded_for=meta.get("HTTP_X_FORWARDED_FOR"),
        trusted_proxies=settings.TRUSTED_PROXY_COUNT,
    )
