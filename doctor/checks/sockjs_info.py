"""Check 3: ``GET <api>/ws/info`` answers 200 JSON, and no page creates SockJS with a relative URL
(field failure 3: ``new SockJS('/chat')`` resolved against the page's origin; ``/ws/info`` 404).
"""

from __future__ import annotations

import time

import httpx

from doctor.checks.common import own_script_sources, usable_pages
from doctor.context import Context, is_login_redirect
from doctor.model import Finding, Status
from doctor.net import describe_error
from doctor.pages import relative_sockjs_urls


def info_url(ctx: Context) -> str:
    return ctx.api_url(ctx.options.sockjs_path.rstrip("/") + f"/info?t={int(time.time() * 1000)}")


async def run(ctx: Context) -> list[Finding]:
    path = ctx.options.sockjs_path.rstrip("/")
    findings = [await _probe_info(ctx, path)]
    if ctx.frontend != ctx.api:
        pages, _ = await usable_pages(ctx)
        for page in pages:
            for name, text in await own_script_sources(ctx, page):
                for url in relative_sockjs_urls(text):
                    findings.append(
                        Finding(
                            Status.FAIL,
                            f"{name} creates new SockJS('{url}'), which resolves "
                            f"against the page's origin {ctx.frontend}, not the API",
                            f"use new SockJS(API_ORIGIN + '{path}')",
                        )
                    )
    return findings


async def _probe_info(ctx: Context, path: str) -> Finding:
    url = info_url(ctx)
    shown = url.split("?")[0]
    try:
        response = await ctx.http.get(url, headers={"Origin": ctx.frontend})
    except httpx.HTTPError as exc:
        return Finding(Status.FAIL, f"GET {shown} failed ({describe_error(exc)})", "check --api and that the API is up")
    status = response.status_code
    if status == 404:
        return Finding(
            Status.FAIL,
            f"GET {shown} answered 404, so the SockJS URL is relative to the page or the endpoint path differs",
            f"use API_ORIGIN + '{path}' (or pass --sockjs-path)",
        )
    exempt = f"exempt {path}/ from it and authenticate on STOMP CONNECT instead"
    if is_login_redirect(response, ctx.options.login_path) or status in (401, 403):
        what = (
            f"redirects to the login page {response.headers.get('location')}"
            if response.is_redirect
            else f"answered {status}"
        )
        return Finding(Status.FAIL, f"GET {shown} {what}, so the API's authentication intercepts {path}/", exempt)
    if response.is_redirect:
        return Finding(
            Status.FAIL,
            f"GET {shown} redirects to {response.headers.get('location')}, and a redirected "
            "cross-origin SockJS request fails",
            f"serve SockJS at API_ORIGIN + '{path}' without a redirect",
        )
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    try:
        info = response.json() if status == 200 else None
    except ValueError:
        info = None
    if status != 200 or not isinstance(info, dict) or "websocket" not in info:
        return Finding(
            Status.FAIL,
            f"GET {shown} answered {status} {kind or 'without a type'}, not SockJS info JSON",
            f"route API_ORIGIN + '{path}' to the SockJS endpoint (not a frontend fallback)",
        )
    if info.get("websocket") is False:
        return Finding(
            Status.WARN,
            f"GET {shown} says the WebSocket transport is disabled, so SockJS falls back to streaming or polling",
            "enable WebSocket on the SockJS endpoint unless a proxy blocks it",
        )
    return Finding(
        Status.PASS,
        f"GET {shown} → 200 JSON (websocket: {str(info.get('websocket')).lower()}, "
        f"cookie_needed: {str(info.get('cookie_needed')).lower()})",
    )
