"""Check 2: every script the pages load answers 200 with a JavaScript type, and a page whose scripts use
SockJS or STOMP loads those client libraries itself (field failure 2: a separately built frontend lost them).
"""

from __future__ import annotations

from doctor.checks.common import is_page_script, page_label, script_texts, usable_pages
from doctor.context import Context
from doctor.model import Finding, Status
from doctor.pages import client_libraries_used, is_javascript_type, is_library

_LIBRARY_FILES = {"SockJS": "sockjs", "STOMP": "stomp"}


async def run(ctx: Context) -> list[Finding]:
    pages, findings = await usable_pages(ctx)
    findings = [f for f in findings if f.status is Status.FAIL]  # missing pages are script-order's to report
    checked: set[str] = set()
    for page in pages:
        texts = await script_texts(ctx, page.scripts)
        for script, fetched in texts.items():
            if fetched.url in checked:
                continue
            checked.add(fetched.url)
            kind = fetched.content_type.split(";")[0].strip() or "no Content-Type"
            if fetched.error:
                findings.append(
                    Finding(
                        Status.FAIL,
                        f"{fetched.url} cannot be loaded ({fetched.error})",
                        "serve the file from a reachable host or correct the <script src>",
                    )
                )
            elif fetched.status != 200:
                findings.append(
                    Finding(
                        Status.FAIL,
                        f"{script.name} answers {fetched.status} at {fetched.url}",
                        "deploy the file with the frontend build or correct the <script src>",
                    )
                )
            elif not is_javascript_type(fetched.content_type):
                why = " (an index.html fallback or a login page?)" if "html" in kind else ""
                findings.append(
                    Finding(
                        Status.FAIL,
                        f"{script.name} is served as {kind}{why}",
                        "serve .js files as text/javascript, which browsers require with nosniff",
                    )
                )
        loaded = " ".join(s.name.lower() for s in page.scripts if is_library(s))
        for script, fetched in texts.items():
            if not is_page_script(script, page, ctx) or not fetched.text:
                continue
            for library in sorted(client_libraries_used(fetched.text)):
                if _LIBRARY_FILES[library] not in loaded:
                    findings.append(
                        Finding(
                            Status.FAIL,
                            f"{script.name} uses {library} but {page_label(page)} loads no {library} client library",
                            f'add <script defer src="…{_LIBRARY_FILES[library]}….js"> before '
                            "global.js: a separately built frontend must load the client libraries itself",
                        )
                    )
    if not findings:
        if checked:
            findings.append(Finding(Status.PASS, f"{len(checked)} scripts answer 200 with a JavaScript type"))
        else:
            findings.append(Finding(Status.WARN, "the pages load no scripts", "give the chat page paths with --page"))
    return findings
