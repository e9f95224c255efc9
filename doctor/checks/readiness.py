"""Check 10: ``GET <api>/readyz/``, when the deployment exposes it, says the worker that answered is ready.

A worker that is up but not ready (database unreachable, Redis gone, shutting down) explains symptoms the
other checks only see from outside: messages that reach only some clients, RECEIPTs that never come.
"""

from __future__ import annotations

import httpx

from doctor.context import Context
from doctor.model import Finding, Status
from doctor.net import describe_error

PATH = "/readyz/"


async def run(ctx: Context) -> list[Finding]:
    url = ctx.api_url(PATH)
    try:
        response = await ctx.http.get(url)
    except httpx.HTTPError as exc:
        return [Finding(Status.WARN, f"GET {url} failed ({describe_error(exc)})", "check --api and that the API is up")]
    if response.status_code == 404:
        return [Finding(Status.PASS, f"the deployment does not expose {PATH} (nothing to read)")]
    try:
        body = response.json()
        checks = body["checks"]
        ready = body["ready"]
    except (ValueError, KeyError, TypeError):
        return [Finding(Status.WARN, f"GET {url} answered {response.status_code} without the readiness JSON",
                        f"{PATH} should answer {{\"ready\": …, \"checks\": …}}")]  # fmt: skip
    failing = {name: item.get("detail", "") for name, item in checks.items() if not item.get("ok")}
    if ready and response.status_code == 200 and not failing:
        return [Finding(Status.PASS, f"{PATH} is ready ({', '.join(sorted(checks))} ok)")]
    what = "; ".join(f"{name}: {detail}" for name, detail in sorted(failing.items())) or "ready is false"
    fixes = {
        "database": "check DATABASE_URL and that the database is up",
        "redis": "check REDIS_URL and that redis-server is up (messages do not cross workers meanwhile)",
        "shutdown": "the worker that answered is shutting down; retry, and see that its restart completes",
    }
    fix = "; ".join(fixes[name] for name in sorted(failing) if name in fixes) or "see the worker's log"
    return [Finding(Status.FAIL, f"GET {url} answered {response.status_code}, not ready ({what})", fix)]
