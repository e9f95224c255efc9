"""Check 8: certificate validity and days to expiry for each HTTPS origin, and the servers' clocks against
this machine's (a JWT's ``exp``/``nbf`` fail with clock skew).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import json
import ssl
import time

import httpx

from doctor.context import Context
from doctor.model import Finding, Status
from doctor.net import describe_error, fetch_certificate

NO_DATE = "sends no Date header (clock not compared)"
CLOCK_FIX = "synchronise the clocks with NTP (JWT_LEEWAY only hides skew)"


async def run(ctx: Context) -> list[Finding]:
    origins = list(dict.fromkeys([ctx.frontend, ctx.api]))
    results = await asyncio.gather(*(_certificate(ctx, o) for o in origins if o.startswith("https://")))
    findings = list(results)
    findings += await asyncio.gather(*(_clock(ctx, o) for o in origins))
    findings += await _token_clock(ctx)
    if not any(f.status is not Status.PASS for f in findings):
        compared = [f.cause for f in findings if not f.cause.endswith(NO_DATE)]
        parts = compared or [f.cause for f in findings]
        if not results:
            parts.insert(0, "no HTTPS origin, so no certificate to check")
        findings.append(Finding(Status.PASS, "; ".join(parts)))
    return findings


async def _certificate(ctx: Context, origin: str) -> Finding:
    o = ctx.options
    try:
        cert = await fetch_certificate(origin, step_timeout=o.timeout)
    except (OSError, ssl.SSLError) as exc:
        return Finding(
            Status.FAIL,
            f"the TLS handshake with {origin} failed ({describe_error(exc)})",
            "serve a valid certificate on the HTTPS port",
        )
    days = cert.days_left(dt.datetime.now(dt.UTC))
    if days is not None and days < 0:
        return Finding(
            Status.FAIL,
            f"the certificate of {origin} expired {-days:.0f} days ago",
            "renew it and automate renewal (ACME, e.g. certbot)",
        )
    if not cert.trusted:
        severity = Status.WARN if o.insecure else Status.FAIL
        accepted = " (accepted because of --insecure)" if o.insecure else ""
        return Finding(
            severity,
            f"the certificate of {origin} is not trusted: {cert.trust_error}{accepted}, and browsers refuse it too",
            "install a certificate from a public CA with its full chain",
        )
    if days is not None and days < o.cert_warn_days:
        return Finding(
            Status.WARN,
            f"the certificate of {origin} expires in {days:.0f} days",
            "renew it and automate renewal (ACME, e.g. certbot)",
        )
    left = f", {days:.0f} days left" if days is not None else ""
    return Finding(Status.PASS, f"{origin} certificate valid{left}")


def _judge_skew(what: str, skew: float, ctx: Context) -> Finding:
    o = ctx.options
    if abs(skew) > o.clock_skew_fail:
        return Finding(
            Status.FAIL,
            f"{what} is {skew:+.0f}s off this machine's clock, so JWTs fail their exp/nbf checks",
            CLOCK_FIX,
        )
    if abs(skew) > o.clock_skew_warn:
        return Finding(Status.WARN, f"{what} is {skew:+.0f}s off this machine's clock", CLOCK_FIX)
    return Finding(Status.PASS, f"{what} within {max(abs(skew), 1):.0f}s of this machine's")


async def _clock(ctx: Context, origin: str) -> Finding:
    sent = time.time()
    try:
        response = await ctx.http.get(origin + "/")
    except httpx.HTTPError as exc:
        return Finding(Status.WARN, f"cannot read the clock of {origin} ({describe_error(exc)})", "check the origin")
    received = time.time()
    header = response.headers.get("date")
    try:
        server = email.utils.parsedate_to_datetime(header).timestamp() if header else None
    except (TypeError, ValueError):
        server = None
    if server is None:
        return Finding(Status.PASS, f"{origin} {NO_DATE}")
    # Date has one-second resolution: compare with the middle of the exchange, and forgive that second.
    skew = server - (sent + received) / 2
    skew = 0.0 if abs(skew) <= 1 + (received - sent) else skew
    return _judge_skew(f"the clock of {origin}", skew, ctx)


def jwt_claims(token: str) -> dict:
    """The payload of a JWT, unverified (only its times are read)."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


async def _token_clock(ctx: Context) -> list[Finding]:
    outcome = await ctx.token()
    if not outcome.token:
        return []
    claims = jwt_claims(outcome.token)
    now = time.time()
    if isinstance(claims.get("exp"), int | float) and claims["exp"] < now:
        return [
            Finding(
                Status.FAIL,
                "the JWT has expired" + (" (given with --token)" if ctx.options.token else ""),
                "pass a fresh token, or --username/--password",
            )
        ]
    if ctx.options.token or not isinstance(claims.get("iat"), int | float):
        return []
    # A token issued a moment ago: its iat is the API's clock.
    skew = claims["iat"] - now
    skew = 0.0 if abs(skew) <= 2 else skew
    return [_judge_skew("the JWT's iat (the API's clock)", skew, ctx)]
