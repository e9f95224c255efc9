"""A logging filter that masks credentials (JWTs, Bearer values, tickets and codes in URLs) in every log line.

Code here never logs a token on purpose; this is the net under third-party and future log lines (a
request path with ``?ticket=``, an exception message that quotes a header). It rewrites the record's
final message, so it works for any logger whose handler carries it (settings.LOGGING puts it on the
console handler).
"""

from __future__ import annotations

import logging
import re

from sockjs.protocol import redact_session_path

MASK = "[redacted]"
_PATTERNS = (
    # A JWT: three base64url parts, the first one a JSON header ("{"..." encodes as "eyJ").
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
    (re.compile(r"(?i)\b(bearer\s+)[^\s'\",;]+"), r"\1" + MASK),
    (re.compile(r"(?i)([?&](?:ticket|token|access|refresh|code|passcode|access_token|key)=)[^&\s'\"]+"), r"\1" + MASK),
    (re.compile(r"(?i)\b(passcode[:=]\s*)[^\s'\",;\\]+"), r"\1" + MASK),
)


def redact(text: str) -> str:
    """``text`` with every credential-looking part replaced by ``[redacted]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return redact_session_path(text)  # a SockJS session id in a URL is as good as a credential


class RedactSecrets(logging.Filter):
    """Replace the record's message by its redacted form (the record still gets logged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem to report, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def redact_daphne_access_log() -> None:
    """Mask credentials in daphne's access log too (idempotent).

    Daphne writes its access log (on by default, to stdout) straight to a stream, past logging and its
    filters, and each line holds the full request path: an SSE ``?ticket=`` or a hand-over ``?code=``
    would be written out as is. Wrapping the one method that writes an entry keeps the log useful.
    """
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # another ASGI server: its logging goes through the filter above
        return
    original = AccessLogGenerator.write_entry
    if getattr(original, "redacting", False):
        return

    def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None):
        return original(self, host, date, redact(request), status, length, ident, user)

    write_entry.redacting = True  # type: ignore[attr-defined]
    AccessLogGenerator.write_entry = write_entry  # type: ignore[method-assign]
