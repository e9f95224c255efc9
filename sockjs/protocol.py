"""SockJS framing (current sockjs-protocol), sans-IO: frames, client payload parsing, per-transport wrappers.

Nothing here touches a socket, Django or asyncio; every function maps text to text (or bytes), so the
whole wire format can be tested byte by byte. The reference is the current ``sockjs-protocol`` test
suite (``sockjs-protocol.py``), served the same way by sockjs-node and Spring's SockJS service.

Frames the server sends: ``o`` (open), ``h`` (heartbeat), ``a[...]`` (a JSON array of messages) and
``c[code,"reason"]`` (close). The client sends no framing: a JSON array of strings (the HTTP
transports) or, over WebSocket, a JSON array or a single JSON string.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

OPEN_FRAME = "o"
HEARTBEAT_FRAME = "h"
MESSAGE_PREFIX = "a"
CLOSE_PREFIX = "c"

# Close codes and reasons the protocol (and sockjs-client) know.
GO_AWAY = (3000, "Go away!")
ANOTHER_CONNECTION = (2010, "Another connection still open")
CONNECTION_INTERRUPTED = (1002, "Connection interrupted")
# Not in the protocol: our bounded queues. 4500 is what Spring's SockJS uses for "session not reliable".
SLOW_CONSUMER = (4500, "Slow consumer")
INTERNAL_ERROR = (1011, "Internal error")

# Error bodies (HTTP 500) the reference servers send and the conformance suite looks for.
PAYLOAD_EXPECTED = "Payload expected."
BROKEN_JSON = "Broken JSON encoding."
CALLBACK_REQUIRED = '"callback" parameter required'
CALLBACK_INVALID = 'invalid "callback" parameter'

# xhr-streaming starts with 2 KiB of "h" so that old browsers (IE8 XDR) start delivering the stream.
XHR_STREAMING_PRELUDE = "h" * 2048 + "\n"
# EventSource starts with an empty line because of an old Opera bug.
EVENTSOURCE_PRELUDE = "\r\n"
MAX_CALLBACK_LENGTH = 32
HTMLFILE_MIN_PRELUDE = 1024
ONE_YEAR_SECONDS = 365 * 24 * 60 * 60
GREETING = "Welcome to SockJS!\n"
NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
# Before a JSONP callback: a response can never start with bytes a Flash plugin would take for a SWF
# file (the "Rosetta Flash" attack), whatever callback name the page chose.
JSONP_PREFIX = "/**/"

# Characters the server must send escaped even though JSON allows them raw: browsers and proxies
# mangle them (control characters, zero-width and bidi marks, line separators, specials) and
# surrogates cannot be UTF-8 encoded at all. The escape uses lower-case hex, as sockjs-node does.
_SERVER_ESCAPABLE = re.compile("[\x00-\x1f\ud800-\udfff\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff]")
_CALLBACK = re.compile(r"^[A-Za-z0-9_.-]+$")
# Inside an HTML <script> a "</script>" or "<!--" in a message would end or confuse the script
# block; escaping these three characters in the JavaScript string literal is transparent to the client.
_HTML_UNSAFE = re.compile("[<>&]")
# /<prefix>/<server>/<session>/<transport>: the session segment is what an intruder would need. A segment
# starting with "[" is already masked (masking twice would change the fingerprint).
_SESSION_PATH = re.compile(
    r"/([^/?#\s.]+)/([^/?#\s.\[][^/?#\s.]*)(/(?:xhr|xhr_send|xhr_streaming|eventsource|htmlfile|jsonp|jsonp_send|websocket))(?=[?#\s\"']|$)"
)
REDACTED_TAG = "redacted"


class PayloadError(ValueError):
    """A client payload the protocol refuses; ``str(error)`` is the body of the 500 answer."""


class CallbackError(ValueError):
    """A missing or malformed JSONP/htmlfile callback name; ``str(error)`` is the 500 body."""


def _escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def quote(text: str) -> str:
    """JSON-encode one message string with the extra escaping the protocol requires."""
    encoded = json.dumps(text, ensure_ascii=False)
    return _SERVER_ESCAPABLE.sub(_escape_char, encoded)


def message_frame(messages: Iterable[str]) -> str:
    """The ``a[...]`` frame carrying ``messages`` in order."""
    return MESSAGE_PREFIX + "[" + ",".join(quote(m) for m in messages) + "]"


def close_frame(code: int, reason: str) -> str:
    """The ``c[code,"reason"]`` frame."""
    return f"{CLOSE_PREFIX}[{int(code)},{quote(reason)}]"


def session_fingerprint(session_id: str) -> str:
    """A short, one-way tag of a session id: log lines of one session stay correlated, the id stays secret."""
    return hashlib.sha256(session_id.encode("utf-8", errors="replace")).hexdigest()[:12]


def redact_session_path(text: str) -> str:
    """``text`` with the session id of every SockJS session URL in it masked (for logs).

    ``/ws/123/<id>/xhr`` becomes ``/ws/123/[redacted:<fingerprint>]/xhr``.
    """
    return _SESSION_PATH.sub(
        lambda m: f"/{m.group(1)}/[{REDACTED_TAG}:{session_fingerprint(m.group(2))}]{m.group(3)}", text
    )


def is_close_frame(frame: str) -> bool:
    """True for ``c[...]``: the receiver must end its response after it."""
    return frame.startswith(CLOSE_PREFIX)


def _reject_constant(name: str) -> object:
    # json.loads accepts NaN and Infinity, which are not JSON and which no SockJS client sends.
    raise ValueError(f"{name} is not JSON")


def _loads(text: str | bytes) -> object:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError(BROKEN_JSON) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        raise PayloadError(BROKEN_JSON) from None


def _as_messages(value: object, *, single_allowed: bool) -> list[str]:
    if single_allowed and isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PayloadError(PAYLOAD_EXPECTED)
    return value


def decode_xhr_send(body: bytes) -> list[str]:
    """Messages of an ``xhr_send`` body: a JSON array of strings, whatever the Content-Type."""
    if not body:
        raise PayloadError(PAYLOAD_EXPECTED)
    return _as_messages(_loads(body), single_allowed=False)


def decode_jsonp_send(body: bytes, content_type: str) -> list[str]:
    """Messages of a ``jsonp_send`` body: form field ``d`` when form-encoded, else the raw body."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise PayloadError(BROKEN_JSON) from None
        values = form.get("d")
        raw: str | bytes = values[0] if values else ""
    else:
        raw = body
    if not raw:
        raise PayloadError(PAYLOAD_EXPECTED)
    return _as_messages(_loads(raw), single_allowed=False)


def decode_websocket(text: str) -> list[str]:
    """Messages of one WebSocket text frame: a JSON array or a JSON string; empty frames carry none."""
    if not text:
        return []
    return _as_messages(_loads(text), single_allowed=True)


def validate_callback(query: Mapping[str, list[str]]) -> str:
    """The JSONP/htmlfile callback from the parsed query (``c`` or ``callback``), validated."""
    values = query.get("c") or query.get("callback")
    if not values:
        raise CallbackError(CALLBACK_REQUIRED)
    callback = values[0]
    if len(callback) > MAX_CALLBACK_LENGTH or not _CALLBACK.match(callback):
        raise CallbackError(CALLBACK_INVALID)
    return callback


# --- Transport wrappers: how one frame travels inside each HTTP transport's response body. ----------


def wrap_xhr(frame: str) -> str:
    """xhr-polling and xhr-streaming: one frame per line."""
    return frame + "\n"


def wrap_eventsource(frame: str) -> str:
    """EventSource: one ``data:`` event per frame (frames never contain raw newlines)."""
    return f"data: {frame}\r\n\r\n"


def wrap_jsonp(frame: str, callback: str) -> str:
    """jsonp-polling: a call of the client's callback with the frame as a JavaScript string."""
    return f"{JSONP_PREFIX}{callback}({json.dumps(frame, ensure_ascii=False)});\r\n"


def wrap_htmlfile(frame: str) -> str:
    """htmlfile: a script block calling ``p()`` defined by the prelude."""
    literal = _HTML_UNSAFE.sub(_escape_char, json.dumps(frame, ensure_ascii=False))
    return f"<script>\np({literal});\n</script>\r\n"


_HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.%(callback)s;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>
"""


def htmlfile_prelude(callback: str) -> str:
    """The htmlfile page head, padded past 1 KiB because Safari buffers shorter documents."""
    head = _HTMLFILE_HEAD % {"callback": callback}
    return head + " " * max(0, HTMLFILE_MIN_PRELUDE - len(head)) + "\r\n\r\n"


# --- Static resources ---------------------------------------------------------------------------------

_IFRAME = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="%(client_url)s"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"""


@dataclass(frozen=True)
class IframePage:
    """The ``iframe.html`` body and its ETag (a hash of the body, stable across processes)."""

    body: bytes
    etag: str

    @classmethod
    def build(cls, client_url: str) -> IframePage:
        escaped = client_url.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
        body = (_IFRAME % {"client_url": escaped}).encode("utf-8")
        return cls(body=body, etag='"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"')


def info(*, websocket: bool, cookie_needed: bool) -> bytes:
    """The ``/info`` JSON body; ``entropy`` is a fresh 32-bit random number on every call."""
    data = {
        "websocket": websocket,
        "origins": ["*:*"],
        "cookie_needed": cookie_needed,
        "entropy": secrets.randbits(32),
    }
    return json.dumps(data, separators=(",", ":")).encode("ascii")
