"""Network probes with timeouts: HTTP (httpx), the WebSocket + STOMP CONNECT probe (websockets) and the
TLS certificate of an origin. Every function here is bounded by the timeout it is given.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

logger = logging.getLogger(__name__)
USER_AGENT = "chat-doctor/1.0"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def join(origin: str, path: str) -> str:
    return origin.rstrip("/") + "/" + path.lstrip("/")


def websocket_url(origin: str, path: str) -> str:
    """``https://api`` + ``/ws/websocket`` → ``wss://api/ws/websocket``."""
    url = join(origin, path)
    return "wss://" + url[len("https://") :] if url.startswith("https://") else "ws://" + url[len("http://") :]


def http_client(*, timeout: float, insecure: bool, cookies: bool = False) -> httpx.AsyncClient:
    """A client that never follows redirects (a redirect is itself a finding) and times out every phase."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        verify=not insecure,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        cookies=httpx.Cookies() if cookies else None,
    )


def ssl_context(*, insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe_error(exc: BaseException) -> str:
    """A short, token-free description of a network error."""
    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        return "cannot connect"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- WebSocket + STOMP --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StompProbe:
    """What a WebSocket handshake and one STOMP CONNECT produced."""

    handshake_status: int | None = None  # 101 when the upgrade succeeded, else the HTTP status
    error: str = ""  # a transport error (refused, timed out, TLS…)
    command: str = ""  # CONNECTED / ERROR / "" when no frame arrived
    headers: tuple[tuple[str, str], ...] = ()
    closed: bool = False  # the server closed the socket
    close_code: int | None = None

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")


def stomp_connect_frame(host: str, token: str | None) -> str:
    lines = ["CONNECT", "accept-version:1.2,1.1,1.0", f"host:{host}", "heart-beat:0,0"]
    if token:
        lines.append(f"Authorization:Bearer {token}")
    return "\n".join(lines) + "\n\n\x00"


def parse_stomp_frame(data: str | bytes) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """Command and headers of the first frame in a WebSocket message; None for a heart-beat."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.lstrip("\r\n")
    if not text:
        return None
    head = text.split("\n\n", 1)[0]
    lines = head.replace("\r\n", "\n").split("\n")
    headers = tuple((k, v) for k, _, v in (line.partition(":") for line in lines[1:] if line))
    return lines[0].strip(), headers


async def stomp_probe(
    url: str, *, origin: str | None, token: str | None, step_timeout: float, insecure: bool
) -> StompProbe:
    """Open a WebSocket (sending ``Origin`` like a browser), send CONNECT, and read the first frame.

    ``step_timeout`` bounds the handshake and the wait for the first frame; the whole probe takes at most twice it.
    """
    timeout = step_timeout
    ssl_ctx = ssl_context(insecure=insecure) if url.startswith("wss://") else None
    host = urlsplit(url).hostname or ""
    try:
        async with asyncio.timeout(timeout * 2):
            async with ws_connect(
                url,
                origin=origin,  # type: ignore[arg-type]
                ssl=ssl_ctx,
                open_timeout=timeout,
                close_timeout=1,
                subprotocols=["v12.stomp", "v11.stomp", "v10.stomp"],  # type: ignore[list-item]
                user_agent_header=USER_AGENT,
                proxy=None,
            ) as ws:
                await ws.send(stomp_connect_frame(host, token))
                try:
                    while True:
                        frame = parse_stomp_frame(await asyncio.wait_for(ws.recv(), timeout))
                        if frame is not None:
                            return StompProbe(101, command=frame[0], headers=frame[1])
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else None
                    return StompProbe(101, closed=True, close_code=code)
                except TimeoutError:
                    return StompProbe(101, error="timed out")
    except InvalidStatus as exc:
        return StompProbe(exc.response.status_code, error=f"HTTP {exc.response.status_code}")
    except TimeoutError:
        return StompProbe(None, error="timed out")
    except (InvalidHandshake, OSError, ssl.SSLError) as exc:
        return StompProbe(None, error=describe_error(exc))


# --- TLS -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """The leaf certificate an origin presents, and whether this machine trusts it."""

    not_after: dt.datetime | None
    trusted: bool
    trust_error: str = ""
    subject: str = ""

    def days_left(self, now: dt.datetime) -> float | None:
        return None if self.not_after is None else (self.not_after - now).total_seconds() / 86400


def _handshake(host: str, port: int, context: ssl.SSLContext, timeout: float) -> bytes:
    with (
        socket.create_connection((host, port), timeout=timeout) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        return tls.getpeercert(binary_form=True) or b""


def _not_after(der: bytes) -> tuple[dt.datetime | None, str]:
    try:
        from cryptography import x509
    except ImportError:  # cryptography comes with daphne; without it only trust is reported
        return None, ""
    cert = x509.load_der_x509_certificate(der)
    return cert.not_valid_after_utc, cert.subject.rfc4514_string()


async def fetch_certificate(origin: str, *, step_timeout: float) -> Certificate:
    """Handshake twice if needed: verified (trust), then unverified (to read an untrusted certificate)."""
    parts = urlsplit(origin)
    host, port = parts.hostname or "", parts.port or 443
    trusted, trust_error = True, ""
    timeout = step_timeout
    try:
        der = await asyncio.to_thread(_handshake, host, port, ssl.create_default_context(), timeout)
    except ssl.SSLCertVerificationError as exc:
        trusted, trust_error = False, exc.verify_message or str(exc)
        der = await asyncio.to_thread(_handshake, host, port, ssl_context(insecure=True), timeout)
    not_after, subject = _not_after(der) if der else (None, "")
    return Certificate(not_after, trusted, trust_error, subject)
