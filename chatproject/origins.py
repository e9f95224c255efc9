"""One origin matcher for every place an origin is judged: CORS, CSRF, WebSocket, SockJS and SSE.

Patterns follow Spring's ``allowedOriginPatterns``: an exact origin (``https://app.example.com``),
a ``*`` inside the host (``https://*.example.com`` matches any subdomain, not the bare domain), a port
that is ``*`` or a list (``http://localhost:*``, ``https://example.com:[8080,8081]``), or a lone ``*``
for any origin. Default ports are normalised, so ``https://example.com:443`` equals
``https://example.com``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
_PATTERN = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9*._-]+)"
    r"(?::(?P<port>\*|\d+|\[(?:\*|\d+(?:\s*,\s*\d+)*)\]))?/?$",
    re.IGNORECASE,
)


class InvalidOriginPattern(ValueError):
    """A configured origin pattern that cannot match anything sensible."""


def normalize_origin(origin: str) -> str | None:
    """Return ``scheme://host[:port]`` in lower case with the default port dropped, or None."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or str(port) == DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class OriginPattern:
    """One entry of ``FRONTEND_ORIGINS``, compiled to a regular expression over normalised origins."""

    source: str
    regex: str

    @classmethod
    def parse(cls, text: str) -> OriginPattern:
        text = text.strip()
        if text == "*":
            return cls(text, r"^.+$")
        match = _PATTERN.match(text)
        if not match:
            raise InvalidOriginPattern(
                f"{text!r} is not an origin pattern: use scheme://host[:port], e.g. "
                "https://app.example.com, https://*.example.com or http://localhost:*"
            )
        scheme = match["scheme"].lower()
        host = match["host"].lower()
        if "*" in host and host.startswith("["):
            raise InvalidOriginPattern(f"{text!r}: a wildcard cannot stand in an IPv6 address")
        host_re = "[a-z0-9.-]+".join(re.escape(part) for part in host.split("*"))
        port = match["port"]
        default = DEFAULT_PORTS.get(scheme)
        if port is None:
            port_re = ""
        elif port in ("*", "[*]"):
            port_re = r"(?::\d+)?"
        else:
            ports = [p.strip() for p in port.strip("[]").split(",")]
            alternatives = [re.escape(p) for p in ports if p != default]
            optional = default in ports
            port_re = f"(?::(?:{'|'.join(alternatives)}))" if alternatives else ""
            if optional and alternatives:
                port_re += "?"
        return cls(text, f"^{re.escape(scheme)}://{host_re}{port_re}$")

    def matches(self, normalized_origin: str) -> bool:
        return re.match(self.regex, normalized_origin) is not None


@dataclass(frozen=True)
class OriginMatcher:
    """Decides whether a browser origin may use the API with credentials."""

    patterns: tuple[OriginPattern, ...] = field(default_factory=tuple)

    @classmethod
    def from_patterns(cls, patterns: Iterable[str]) -> OriginMatcher:
        return cls(tuple(OriginPattern.parse(p) for p in patterns if p.strip()))

    @property
    def allows_any(self) -> bool:
        return any(p.source == "*" for p in self.patterns)

    @property
    def regexes(self) -> list[str]:
        """Regular expressions for django-cors-headers' ``CORS_ALLOWED_ORIGIN_REGEXES``."""
        return [p.regex for p in self.patterns]

    def allows(self, origin: str | None) -> bool:
        """True when ``origin`` (as a browser sends it in ``Origin``) matches a pattern.

        A lone ``*`` allows every origin a client may send, also ``null`` (file:// pages, sandboxed
        frames) and strings that are no URL origin at all (``test``); every other pattern matches
        well-formed ``scheme://host[:port]`` origins only, so ``null`` never passes them.
        """
        if not origin:
            return False
        if self.allows_any:
            return True
        if origin == "null":
            return False
        normalized = normalize_origin(origin)
        if normalized is None:
            return False
        return any(p.matches(normalized) for p in self.patterns)


def origin_matcher() -> OriginMatcher:
    """The matcher built from settings.FRONTEND_ORIGINS (built once at settings load)."""
    from django.conf import settings

    return settings.ORIGIN_MATCHER
