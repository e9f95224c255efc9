"""Helpers the checks share: which scripts a page runs, and their texts."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

from doctor.context import Context, Fetched
from doctor.model import Finding, Status
from doctor.net import origin_of
from doctor.pages import Page, ScriptTag, is_library

FIX_ORDER = "load the client libraries, then global.js, then the page scripts, all with defer, in that order"


def page_label(page: Page) -> str:
    parts = urlsplit(page.final_url or page.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# What hashing static storages (Django's ManifestStaticFilesStorage, bundlers) insert before ".js".
_CONTENT_HASH = re.compile(r"\.[0-9a-f]{8,32}(?=\.js$)")


def unhashed(name: str) -> str:
    """``global.fb03060d61bd.js`` → ``global.js``: production serves hashed copies of the same script."""
    return _CONTENT_HASH.sub("", name)


def is_global(script: ScriptTag, ctx: Context) -> bool:
    return script.src is not None and unhashed(script.name) == unhashed(ctx.options.global_script)


def is_page_script(script: ScriptTag, page: Page, ctx: Context) -> bool:
    """Our own scripts other than the libraries and global.js (third-party scripts are not judged)."""
    if script.src is None or is_library(script) or is_global(script, ctx):
        return False
    return origin_of(script.src) in (origin_of(page.final_url or page.url), ctx.frontend, ctx.api)


async def usable_pages(ctx: Context) -> tuple[list[Page], list[Finding]]:
    """Pages that could be parsed, plus findings for those that could not."""
    pages = await ctx.pages()
    usable = [p for p in pages if p.status == 200 and p.content_type.startswith("text/html")]
    findings: list[Finding] = []
    for page in pages:
        if page in usable:
            continue
        if page.status == 0:
            findings.append(
                Finding(
                    Status.FAIL, page.note or f"cannot load {page.url}", "check --frontend and that the frontend is up"
                )
            )
        else:
            findings.append(
                Finding(
                    Status.WARN,
                    page.note or f"{page.url} answered {page.status}",
                    "give page paths that exist with --page",
                )
            )
    if not pages:
        findings.append(Finding(Status.WARN, "no frontend page to inspect", "give page paths with --page"))
    return usable, findings


async def script_texts(ctx: Context, scripts: list[ScriptTag]) -> dict[ScriptTag, Fetched]:
    external = [s for s in scripts if s.src is not None]
    fetched = await asyncio.gather(*(ctx.fetch(s.src) for s in external if s.src))
    return dict(zip(external, fetched, strict=True))


async def own_script_sources(ctx: Context, page: Page) -> list[tuple[str, str]]:
    """(name, JavaScript text) of global.js, the page scripts and inline classic scripts of a page."""
    own = [s for s in page.scripts if is_global(s, ctx) or is_page_script(s, page, ctx)]
    texts = await script_texts(ctx, own)
    sources = [(s.name, texts[s].text) for s in own if texts[s].status == 200]
    sources += [(s.name, s.inline) for s in page.scripts if s.src is None and not s.module]
    return sources
