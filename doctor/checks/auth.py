"""Login paths (field failure 7): the token endpoint gives API clients a JWT, and a form login hands the
same JWT to the page (``<meta name="jwt-handover">``), so form-login users do not call the API tokenless.
"""

from __future__ import annotations

from doctor.context import Context
from doctor.model import Finding, Status


async def run(ctx: Context) -> list[Finding]:
    o = ctx.options
    outcome = await ctx.token()
    if outcome.problem is not None:
        return [outcome.problem]
    findings = [Finding(Status.PASS, f"a JWT from {outcome.source}")]
    if o.username and o.password:
        pages = await ctx.pages()
        if ctx.logged_in:
            if any("jwt-handover" in p.meta for p in pages):
                findings.append(
                    Finding(
                        Status.PASS,
                        f"POST {o.token_path} gives a JWT; the form login at {o.login_path} hands one to the page",
                    )
                )
            else:
                findings.append(
                    Finding(
                        Status.WARN,
                        f"the form login at {o.login_path} gives a session but no page "
                        "carried a JWT hand-over, so form-login users call the API without a token",
                        "issue form-login users the same JWT pair (a one-time hand-over code)",
                    )
                )
        else:
            findings.append(
                Finding(Status.PASS, f"POST {o.token_path} gives a JWT (the form login was not needed or not possible)")
            )
    return findings
