"""Sans-IO analysis of frontend pages: the scripts a page loads, in the order a browser runs them, and
what their JavaScript declares or connects to.

No JavaScript parser is needed for the questions asked here: a small scanner that skips comments,
strings, template literals and regular expressions finds top-level declarations and URL literals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

LIBRARY_NAME = re.compile(r"(sockjs|stomp)", re.IGNORECASE)
JAVASCRIPT_TYPES = ("javascript", "ecmascript")


@dataclass(frozen=True)
class ScriptTag:
    """One ``<script>`` element, in document order."""

    position: int
    src: str | None  # absolute URL, None for an inline script
    inline: str = ""
    defer: bool = False
    is_async: bool = False
    module: bool = False

    @property
    def name(self) -> str:
        if self.src is None:
            return f"inline script #{self.position + 1}"
        return urlsplit(self.src).path.rsplit("/", 1)[-1] or self.src

    @property
    def runs_deferred(self) -> bool:
        """Deferred classic scripts and modules run after parsing, in document order."""
        return self.src is not None and (self.defer or self.module) and not self.is_async


@dataclass
class Page:
    """A fetched frontend page: what it loads and declares."""

    url: str
    status: int = 0
    final_url: str = ""
    content_type: str = ""
    csp_header: str = ""
    scripts: list[ScriptTag] = field(default_factory=list)
    stylesheets: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    csp_meta: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def upgrades_insecure_requests(self) -> bool:
        policies = [self.csp_header, *self.csp_meta]
        return any("upgrade-insecure-requests" in p.lower() for p in policies)


class _PageParser(HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.scripts: list[ScriptTag] = []
        self.stylesheets: list[str] = []
        self.meta: dict[str, str] = {}
        self.csp_meta: list[str] = []
        self._inline: dict[str, bool] | None = None
        self._inline_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "base" and a.get("href"):
            self.base_url = urljoin(self.base_url, a["href"])
        elif tag == "script":
            flags = {
                "defer": "defer" in a,
                "is_async": "async" in a,
                "module": a.get("type", "").strip().lower() == "module",
            }
            if a.get("src"):
                self.scripts.append(ScriptTag(len(self.scripts), urljoin(self.base_url, a["src"]), "", **flags))
            else:
                self._inline = flags
                self._inline_text = []
        elif tag == "link" and "stylesheet" in a.get("rel", "").lower().split() and a.get("href"):
            self.stylesheets.append(urljoin(self.base_url, a["href"]))
        elif tag == "meta":
            if a.get("http-equiv", "").lower() == "content-security-policy":
                self.csp_meta.append(a.get("content", ""))
            elif a.get("name"):
                self.meta[a["name"].lower()] = a.get("content", "")

    def handle_data(self, data: str) -> None:
        if self._inline is not None:
            self._inline_text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._inline is not None:
            flags = self._inline
            self._inline = None
            # An inline script ignores defer/async; only a module inline script is deferred.
            self.scripts.append(
                ScriptTag(len(self.scripts), None, "".join(self._inline_text), module=bool(flags["module"]))
            )


def parse_page(html: str, url: str) -> Page:
    """Parse a page's HTML; URLs are made absolute against ``url`` (and any ``<base href>``)."""
    parser = _PageParser(url)
    parser.feed(html)
    parser.close()
    return Page(
        url=url,
        final_url=url,
        scripts=parser.scripts,
        stylesheets=parser.stylesheets,
        meta=parser.meta,
        csp_meta=parser.csp_meta,
    )


def execution_order(scripts: list[ScriptTag]) -> tuple[list[ScriptTag], list[ScriptTag]]:
    """(scripts in the order a browser runs them, async scripts whose order is unpredictable)."""
    blocking = [s for s in scripts if not s.is_async and not s.runs_deferred and not (s.src is None and s.module)]
    deferred = [s for s in scripts if s.runs_deferred or (s.src is None and s.module)]
    unordered = [s for s in scripts if s.is_async and s.src is not None]
    return blocking + deferred, unordered


def is_library(script: ScriptTag) -> bool:
    return script.src is not None and LIBRARY_NAME.search(script.name) is not None


# --- JavaScript scanning -----------------------------------------------------------------------------------

_DECLARATION = re.compile(r"(?:async\s+)?(let|const|var|class|function\*?)\s*\*?\s*([A-Za-z_$][\w$]*)")
_REGEX_PRECEDERS = set("(,=:[!&|?{};+-*%<>~^")
_KEYWORDS_BEFORE_REGEX = ("return", "typeof", "case", "do", "else", "in", "of", "void", "yield", "await")


def _skip_string(text: str, i: int, quote: str) -> int:
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote:
            return i + 1
        if ch == "\n" and quote != "`":
            return i + 1
        i += 1
    return i


def _skip_regex(text: str, i: int) -> int:
    i += 1
    in_class = False
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "\n":
            return i
        if ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        elif ch == "/" and not in_class:
            return i + 1
        i += 1
    return i


def _regex_allowed(code: list[str]) -> bool:
    tail = "".join(code[-12:]).rstrip()
    if not tail:
        return True
    if tail[-1] in _REGEX_PRECEDERS:
        return True
    return any(
        tail.endswith(k) and (len(tail) == len(k) or not tail[-len(k) - 1].isalnum()) for k in _KEYWORDS_BEFORE_REGEX
    )


def top_level_code(text: str) -> str:
    """The code at nesting depth 0, with comments, strings and regular expressions removed."""
    out: list[str] = []
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if ch == "/" and nxt == "/":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch == "/" and nxt == "*":
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
            continue
        if ch in "'\"`":
            i = _skip_string(text, i, ch)
            if depth == 0:
                out.append('""')
            continue
        if ch == "/" and _regex_allowed(out):
            i = _skip_regex(text, i)
            continue
        if ch in "{([":
            if depth == 0:
                out.append(ch)
            depth += 1
        elif ch in "})]":
            depth = max(0, depth - 1)
            if depth == 0:
                out.append(ch)
        elif depth == 0:
            out.append(ch)
        i += 1
    return "".join(out)


def top_level_declarations(text: str) -> dict[str, str]:
    """Names a classic script declares in the global scope: ``{name: "let"|"const"|"var"|...}``."""
    code = top_level_code(text)
    found: dict[str, str] = {}
    for match in _DECLARATION.finditer(code):
        start = match.start()
        if start > 0 and (code[start - 1].isalnum() or code[start - 1] in "_$."):
            continue
        found.setdefault(match.group(2), match.group(1).rstrip("*"))
    return found


_SOCKJS_CALL = re.compile(r"new\s+SockJS\s*\(\s*(['\"`])([^'\"`]*)\1")
_INSECURE_WS = re.compile(r"""['"`](ws://[^'"`\s]*)""")
_INSECURE_HTTP = re.compile(r"""['"`](http://[^'"`\s]+)""")
_USES = {"SockJS": re.compile(r"\bSockJS\b"), "STOMP": re.compile(r"\b(StompJs|Stomp)\s*\.")}


def relative_sockjs_urls(text: str) -> list[str]:
    """String literals passed to ``new SockJS(...)`` that resolve against the page's own origin."""
    return [url for _, url in _SOCKJS_CALL.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", url, re.I)]


def insecure_websocket_urls(text: str) -> list[str]:
    return _INSECURE_WS.findall(text)


def insecure_http_urls(text: str) -> list[str]:
    """``http://`` literals other than XML namespaces (which are names, never fetched)."""
    return [u for u in _INSECURE_HTTP.findall(text) if "www.w3.org" not in u]


def client_libraries_used(text: str) -> set[str]:
    """Which client libraries a page script refers to (``SockJS``, ``STOMP``)."""
    return {name for name, pattern in _USES.items() if pattern.search(text)}


def is_javascript_type(content_type: str) -> bool:
    return any(t in content_type.lower() for t in JAVASCRIPT_TYPES)
