"""Who may use an HTTP-transport session: the client that opened it. Sans-IO: scopes in, decisions out.

A SockJS session id travels in every URL of the session, and the protocol lets anyone who knows it
send into the session (``xhr_send``) or take its next batch of frames (a poll). The client cannot
send headers, and a cookie from the API's origin would be a third-party cookie, so the binding rides
where sockjs-client can put it:

* **a server-issued key** in the query string (``new SockJS(url + "?key=" + key)``; sockjs-client keeps
  a query on every request it derives from the URL). The page gets it from ``POST /<prefix>/key``; the
  key is 32 random bytes' worth of base64url with an HMAC tag, so the server binds sessions only to
  keys it issued, never to a weak one a client made up. A session opened with a key accepts only
  requests carrying the same key; one opened without a key (what the protocol and short session ids
  allow) accepts only requests without one.
* **the peer address** of the opening request (``bind_peer``), so a key and session id that leaked
  (a log, a HAR file) are useless from another address;
* **the Origin**: the first Origin the session sees is pinned; a later request with another one is
  refused (requests without Origin pass this check: script tags and same-origin GETs send none).

Query strings are also where logs and proxies conventionally expect secrets, and where the project's
log redaction masks them; paths are logged everywhere, so the session id alone is never enough.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

KEY_PARAM = "key"
_NONCE_BYTES = 16
_TAG_BYTES = 16
KEY_LENGTH = 43  # base64url of 32 bytes, unpadded


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


PeerAddress = Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True)
class Client:
    """What one request says about who sent it."""

    key: str | None
    peer: str | None
    origin: str | None

    @classmethod
    def from_scope(cls, scope: dict[str, Any], peer_address: PeerAddress | None = None) -> Client:
        """``peer_address`` finds the client's address behind proxies; by default the socket peer."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        keys = query.get(KEY_PARAM)
        return cls(
            key=keys[0] if keys else None,
            peer=(peer_address or socket_peer)(scope),
            origin=_header(scope, b"origin"),
        )


def socket_peer(scope: dict[str, Any]) -> str | None:
    """The address of whoever opened the connection (a proxy's, behind one: pass a ``peer_address``)."""
    client = scope.get("client")
    return str(client[0]) if client else None


class KeyIssuer:
    """Issues session keys and recognises them: 16 random bytes followed by their 16-byte HMAC-SHA256 tag.

    Stateless, so every process sharing ``secret`` recognises every other's keys (the key request and
    the session requests need not reach the same process).
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the session key secret needs at least 16 bytes")
        self._secret = secret

    def _tag(self, nonce: bytes) -> bytes:
        return hmac.new(self._secret, b"sockjs-session-key:" + nonce, hashlib.sha256).digest()[:_TAG_BYTES]

    def issue(self) -> str:
        """A new key, URL-safe, ``KEY_LENGTH`` characters."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return base64.urlsafe_b64encode(nonce + self._tag(nonce)).rstrip(b"=").decode("ascii")

    def issued(self, key: str) -> bool:
        """True when ``key`` is one this issuer (or one with the same secret) made."""
        if len(key) != KEY_LENGTH:
            return False
        try:
            raw = base64.urlsafe_b64decode(key + "=")
        except (ValueError, UnicodeEncodeError):
            return False
        nonce, tag = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        return hmac.compare_digest(tag, self._tag(nonce))


class Refusal(enum.Enum):
    """Why a request may not use a session; the value is the answer's ``detail``."""

    KEY = "this SockJS session was opened with another session key: open a new session"
    PEER = "this SockJS session belongs to a client at another address: open a new session"
    ORIGIN = "this SockJS session belongs to a page of another origin: open a new session"
    FOREIGN_KEY = "the session key was not issued by this server: get one from POST {prefix}/key"


class Binding:
    """The opener of one session, and the check every later request of that session must pass."""

    __slots__ = ("_key", "_origin", "_peer")

    def __init__(self, opener: Client, *, bind_peer: bool) -> None:
        self._key = opener.key
        self._peer = opener.peer if bind_peer else None
        self._origin = opener.origin

    def refusal(self, client: Client) -> Refusal | None:
        """None when ``client`` is the opener as far as the server can tell, else why not."""
        if (self._key is None) != (client.key is None) or (
            self._key is not None and client.key is not None and not hmac.compare_digest(self._key, client.key)
        ):
            return Refusal.KEY
        if self._peer is not None and client.peer != self._peer:
            return Refusal.PEER
        if client.origin is not None:
            if self._origin is None:
                self._origin = client.origin  # the first Origin seen is the session's from now on
            elif client.origin != self._origin:
                return Refusal.ORIGIN
        return None
