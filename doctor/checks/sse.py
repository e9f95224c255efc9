"""Check 7: the notification stream answers ``text/event-stream`` for a fresh ticket and sends something (an
event, ``retry:`` or a heart-beat comment) promptly, and does not answer without a ticket (field failure 8:
``text/plain`` from a mismatched URL, then a stream "fixed" by making it public).
"""

from __future__ import annotations

import asyncio
import time

import httpx

from doctor.context import Context, is_login_redirect
from doctor.model import Finding, Status
from doctor.net import describe_error

FIX_TYPE = "return Content-Type: text/event-stream from the stream view, at the URL EventSource really opens"


async def run(ctx: Context) -> list[Finding]:
    o = ctx.options
    url = ctx.api_url(o.sse_path)
    findings = [await _probe(ctx, url, ticket=None)]
    outcome = await ctx.token()
    if not outcome.token:
        findings.append(outcome.problem or Finding(Status.WARN, "no JWT to ask for a ticket", "see the auth check"))
        return findings
    ticket, why = await ctx.ticket(outcome.token)
    if ticket is None:
        findings.append(
            Finding(
                Status.FAIL,
                f"no stream ticket: {why}",
                "check --ticket-path and that the ticket endpoint takes the JWT",
            )
        )
        return findings
    findings.append(await _probe(ctx, url, ticket=ticket))
    return findings


async def _probe(ctx: Context, url: str, *, ticket: str | None) -> Finding:
    o = ctx.options
    wait = o.sse_wait if o.sse_wait is not None else o.timeout
    headers = {"Accept": "text/event-stream", "Origin": ctx.frontend, "Cache-Control": "no-cache"}
    label = f"GET {o.sse_path}" + (" with a fresh ticket" if ticket else " without a ticket")
    try:
        async with ctx.http.stream(
            "GET", url, params={"ticket": ticket} if ticket else None, headers=headers
        ) as response:
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            status = response.status_code
            if ticket is None:
                return _judge_public(label, status, kind, response)
            if response.is_redirect:
                where = response.headers.get("location")
                login = " (a login page)" if is_login_redirect(response, o.login_path) else ""
                return Finding(
                    Status.FAIL,
                    f"{label} redirects to {where}{login}, which EventSource cannot follow with credentials",
                    "authenticate the stream with the ticket in its URL, not a login redirect",
                )
            if status == 404:
                return Finding(
                    Status.FAIL,
                    f"{label} answered 404, so the stream URL differs from the route",
                    f"point EventSource at API_ORIGIN + the stream's route (or pass --sse-path); {FIX_TYPE}",
                )
            if status in (401, 403):
                return Finding(
                    Status.FAIL,
                    f"{label} answered {status}: the stream refused a ticket just issued",
                    "accept the tickets the ticket endpoint issues (same store, same TTL clock)",
                )
            if kind != "text/event-stream":
                return Finding(
                    Status.FAIL,
                    f"{label} answered {status} {kind or 'without a type'}, so EventSource "
                    f'refuses it (MIME type is not "text/event-stream")',
                    FIX_TYPE,
                )
            first = await _first_line(response, wait)
    except httpx.HTTPError as exc:
        return Finding(Status.FAIL, f"{label} failed ({describe_error(exc)})", "check --api and --sse-path")
    if first is None:
        return Finding(
            Status.WARN,
            f"{label} sent no event, retry or heart-beat comment within {wait:g}s, so a proxy may buffer the stream",
            "disable proxy buffering for the stream (X-Accel-Buffering: no) or "
            "pass --sse-wait longer than the heart-beat interval",
        )
    line, elapsed = first
    what = "a heart-beat comment" if line.startswith(":") else f"'{line.split(':', 1)[0]}:'"
    return Finding(Status.PASS, f"{label} → 200 text/event-stream, {what} after {elapsed * 1000:.0f} ms")


def _judge_public(label: str, status: int, kind: str, response: httpx.Response) -> Finding:
    if status == 200 and kind == "text/event-stream":
        return Finding(
            Status.FAIL,
            f"{label} answered 200 text/event-stream, so the stream is public",
            "require the one-time ticket (EventSource cannot send an Authorization header)",
        )
    if status == 200:
        return Finding(
            Status.FAIL,
            f"{label} answered 200 {kind or 'without a type'}, which is neither a refusal nor an event stream",
            FIX_TYPE,
        )
    return Finding(Status.PASS, f"{label} → {status}")


async def _first_line(response: httpx.Response, wait: float) -> tuple[str, float] | None:
    """The first non-empty line of the stream and when it came, or None after ``wait`` seconds."""
    started = time.monotonic()
    buffer = ""

    async def read() -> str | None:
        nonlocal buffer
        async for chunk in response.aiter_text():
            buffer += chunk
            for line in buffer.splitlines():
                if line.strip():
                    return line
        return None

    try:
        line = await asyncio.wait_for(read(), wait)
    except (TimeoutError, httpx.ReadTimeout):
        return None
    return (line, time.monotonic() - started) if line is not None else None
