"""Check 1: the page runs the client libraries, then global.js, then its page scripts; no global is
declared twice across scripts (field failure 1: chat.js ran before global.js and redeclared ``nickname``).
"""

from __future__ import annotations

from doctor.checks.common import FIX_ORDER, is_global, is_page_script, own_script_sources, page_label, usable_pages
from doctor.context import Context
from doctor.model import Finding, Status
from doctor.pages import Page, execution_order, is_library, top_level_declarations


async def run(ctx: Context) -> list[Finding]:
    pages, findings = await usable_pages(ctx)
    summaries: list[str] = []
    for page in pages:
        findings += _order_findings(ctx, page, summaries)
        findings += await _duplicate_findings(ctx, page)
    if not any(f.status is not Status.PASS for f in findings) and summaries:
        findings.append(Finding(Status.PASS, "; ".join(summaries)))
    return findings


def _order_findings(ctx: Context, page: Page, summaries: list[str]) -> list[Finding]:
    label = page_label(page)
    ordered, unordered = execution_order(page.scripts)
    findings: list[Finding] = []
    for script in unordered:
        if is_library(script) or is_global(script, ctx) or is_page_script(script, page, ctx):
            findings.append(
                Finding(
                    Status.FAIL,
                    f"{script.name} is async on {label}, so it may run before or after any other script",
                    f"load it with defer instead of async; {FIX_ORDER}",
                )
            )
    glob = next((i for i, s in enumerate(ordered) if is_global(s, ctx)), None)
    libraries = [i for i, s in enumerate(ordered) if is_library(s)]
    page_scripts = [i for i, s in enumerate(ordered) if is_page_script(s, page, ctx)]
    if glob is None:
        if page_scripts:
            findings.append(
                Finding(
                    Status.WARN,
                    f"{label} loads page scripts but no {ctx.options.global_script}",
                    "name the shared script with --global-script, or load it before the page scripts",
                )
            )
        return findings
    for i in page_scripts:
        if i < glob:
            findings.append(
                Finding(
                    Status.FAIL,
                    f"{ordered[i].name} runs before {ordered[glob].name} on {label}, so "
                    "it cannot see what the shared script defines",
                    FIX_ORDER,
                )
            )
        late = [ordered[j].name for j in libraries if j > i]
        if late:
            findings.append(
                Finding(
                    Status.FAIL,
                    f"{ordered[i].name} runs before the client library {', '.join(late)} on {label}",
                    FIX_ORDER,
                )
            )
    for j in libraries:
        if j > glob and not any(i < j for i in page_scripts):
            findings.append(
                Finding(
                    Status.WARN,
                    f"the client library {ordered[j].name} runs after {ordered[glob].name} on {label}",
                    FIX_ORDER,
                )
            )
    names = [s.name for s in ordered if s.src is not None]
    summaries.append(f"{label}: {' → '.join(names)}")
    return findings


async def _duplicate_findings(ctx: Context, page: Page) -> list[Finding]:
    declared: dict[str, list[tuple[str, str]]] = {}
    for name, text in await own_script_sources(ctx, page):
        for identifier, kind in top_level_declarations(text).items():
            declared.setdefault(identifier, []).append((name, kind))
    findings = []
    for identifier, where in sorted(declared.items()):
        if len(where) < 2:
            continue
        lexical = any(kind in ("let", "const", "class") for _, kind in where)
        scripts = " and ".join(f"{name} ({kind})" for name, kind in where)
        effect = (
            "a SyntaxError: Identifier has already been declared" if lexical else "one silently overwrites the other"
        )
        findings.append(
            Finding(
                Status.WARN,
                f"the global {identifier!r} is declared by {scripts} on {page_label(page)}, which is {effect}",
                "declare shared values once in global.js (on one namespace object) and never "
                "redeclare them in page scripts",
            )
        )
    return findings
