"""Check 4: ``/ws/info``, a REST endpoint (actual request and preflight) and the SSE stream answer the
frontend's Origin with a matching ``Access-Control-Allow-Origin`` (field failure 5: the API's allowed
origin patterns lacked the frontend). Redirects and 404s are left to the checks that own those paths.
"""

from __future__ import annotations

import httpx

from doctor.checks.sockjs_info import info_url
from doctor.context import Context
from doctor.model import Finding, Status
from doctor.net import describe_error


async def run(ctx: Context) -> list[Finding]:
    o = ctx.options
    outcome = await ctx.token()
    auth = {"Authorization": f"Bearer {outcome.token}"} if outcome.token else {}
    findings: list[Finding] = []
    judged: list[str] = []

    async def judge(label: str, method: str, url: str, *, credentials: bool, strict: bool = True, **kw) -> None:
        try:
            if method == "STREAM":
                async with ctx.http.stream("GET", url, **kw) as response:
                    result = _judge(ctx, label, response, credentials=credentials, strict=strict)
            else:
                response = await ctx.http.request(method, url, **kw)
                result = _judge(ctx, label, response, credentials=credentials, strict=strict)
        except httpx.HTTPError as exc:
            result = Finding(
                Status.FAIL, f"{label} failed ({describe_error(exc)})", "check --api and that the API is up"
            )
        if result is not None:
            findings.append(result)
        else:
            judged.append(label)

    origin = {"Origin": ctx.frontend}
    await judge(f"GET {o.sockjs_path.rstrip('/')}/info", "GET", info_url(ctx), credentials=True, headers=origin)
    rest = ctx.api_url(o.rest_path)
    await judge(
        f"preflight OPTIONS {o.rest_path}",
        "OPTIONS",
        rest,
        credentials=True,
        headers={**origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"},
    )
    await judge(f"GET {o.rest_path}", "GET", rest, credentials=True, headers={**origin, **auth})
    ticket = None
    if outcome.token:
        ticket, _ = await ctx.ticket(outcome.token)
    stream = ctx.api_url(o.sse_path)
    await judge(
        f"GET {o.sse_path}" + ("" if ticket else " (without a ticket)"),
        "STREAM",
        stream,
        credentials=False,
        strict=ticket is not None,
        params={"ticket": ticket} if ticket else None,
        headers={**origin, "Accept": "text/event-stream"},
    )
    if not any(f.status is Status.FAIL for f in findings):
        findings.append(Finding(Status.PASS, f"{', '.join(judged)} allow {ctx.frontend} with credentials"))
    return findings


def _judge(ctx: Context, label: str, response: httpx.Response, *, credentials: bool, strict: bool) -> Finding | None:
    """None when the CORS headers let the frontend read the response."""
    if response.is_redirect or response.status_code == 404:
        return Finding(Status.PASS, f"{label} answered {response.status_code}: judged by the check that owns the path")
    allowed = response.headers.get("access-control-allow-origin")
    fix_origin = f"add {ctx.frontend} to the API's allowed origin patterns (FRONTEND_ORIGINS)"
    severity = Status.FAIL if strict else Status.WARN
    if allowed is None:
        return Finding(
            severity,
            f"{label} answers {response.status_code} without Access-Control-Allow-Origin for "
            f"{ctx.frontend}, so the browser blocks it",
            fix_origin,
        )
    if allowed == "*" and credentials:
        return Finding(
            severity,
            f"{label} answers Access-Control-Allow-Origin: *, which browsers refuse for a request with credentials",
            "echo the request's allowed origin instead of *",
        )
    if allowed not in ("*", ctx.frontend):
        return Finding(severity, f"{label} allows {allowed}, not {ctx.frontend}", fix_origin)
    if credentials and response.headers.get("access-control-allow-credentials", "").lower() != "true":
        return Finding(
            severity,
            f"{label} lacks Access-Control-Allow-Credentials: true",
            "allow credentials in the API's CORS configuration",
        )
    if response.request.method == "OPTIONS":
        if not 200 <= response.status_code < 300:
            return Finding(
                severity,
                f"{label} answered {response.status_code}, so the browser never sends the request",
                "let OPTIONS preflights through without authentication",
            )
        headers = response.headers.get("access-control-allow-headers", "").lower()
        if "authorization" not in headers and "*" not in headers:
            return Finding(
                severity,
                f"{label} does not allow the Authorization header",
                "add authorization to the API's allowed CORS headers",
            )
    return None
