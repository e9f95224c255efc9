"""The accounts app's STOMP destinations: re-authenticating a live connection (``/app/auth.refresh``)."""

from __future__ import annotations

from accounts.tokens import parse_bearer
from stompengine import Denied, SendContext, app_destination


@app_destination("/app/auth.refresh")
async def refresh_token(ctx: SendContext) -> None:
    """Re-authenticate a live connection: ``SEND /app/auth.refresh`` with ``Authorization: Bearer <new jwt>``
    (or the token as the body). Same user only; the connection then lives until the new token expires."""
    token = parse_bearer(ctx.authorization) if ctx.authorization else None
    if token is None:
        token = ctx.text.strip()
        token = parse_bearer(token) or token
    if not token:
        raise Denied(
            "Unauthorized", "SEND to /app/auth.refresh needs 'Authorization: Bearer <jwt>'", code="unauthorized"
        )
    await ctx.reauthenticate({"authorization": f"Bearer {token}"})
