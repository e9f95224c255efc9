"""Check 5: an HTTPS frontend references no ``http://`` API, script or stylesheet (unless it carries
``upgrade-insecure-requests``) and opens no plain ``ws://`` (field failure 4: mixed content).
"""

from __future__ import annotations

from doctor.checks.common import own_script_sources, page_label, usable_pages
from doctor.context import Context
from doctor.model import Finding, Status
from doctor.pages import insecure_websocket_urls

UIR = '<meta http-equiv="Content-Security-Policy" content="upgrade-insecure-requests">'


async def run(ctx: Context) -> list[Finding]:
    if not ctx.frontend.startswith("https://"):
        return [
            Finding(
                Status.PASS,
                f"the frontend {ctx.frontend} is plain http, so nothing is mixed (run again "
                "once it is served over HTTPS)",
            )
        ]
    pages, _ = await usable_pages(ctx)
    findings: list[Finding] = []
    api_fix = "serve the API over HTTPS and set API_ORIGIN=https://…"
    if ctx.api.startswith("http://"):
        findings.append(
            Finding(
                Status.FAIL,
                f"the HTTPS frontend calls the API at {ctx.api}, which browsers block as mixed content",
                api_fix,
            )
        )
    for page in pages:
        label = page_label(page)
        upgrades = page.upgrades_insecure_requests
        insecure = (
            [("API origin", page.meta["api-origin"])] if page.meta.get("api-origin", "").startswith("http://") else []
        )
        insecure += [("script", s.src) for s in page.scripts if s.src and s.src.startswith("http://")]
        insecure += [("stylesheet", href) for href in page.stylesheets if href.startswith("http://")]
        for kind, url in insecure:
            if kind == "API origin" and ctx.api.startswith("http://"):
                continue  # already reported once
            if upgrades:
                findings.append(
                    Finding(
                        Status.WARN,
                        f"{label} references the {kind} {url}; upgrade-insecure-requests "
                        "makes the browser try https instead",
                        f"reference {url.replace('http://', 'https://', 1)} directly",
                    )
                )
            else:
                fix = api_fix if kind == "API origin" else f"load it over https, or add {UIR}"
                findings.append(
                    Finding(
                        Status.FAIL,
                        f"the HTTPS page {label} references the {kind} {url}, which browsers block as mixed content",
                        fix,
                    )
                )
        for name, text in await own_script_sources(ctx, page):
            for url in insecure_websocket_urls(text):
                findings.append(
                    Finding(
                        Status.FAIL,
                        f"{name} on {label} opens {url}, a plain ws:// that an HTTPS page may not",
                        "derive the WebSocket URL from API_ORIGIN (wss:// under https)",
                    )
                )
    if not any(f.status is not Status.PASS for f in findings):
        findings.append(
            Finding(
                Status.PASS, f"{len(pages)} HTTPS pages reference no http:// API, script or stylesheet and no ws://"
            )
        )
    return findings
