"""Channels consumers for the SockJS URLs: they move bytes between ASGI and the session, nothing more.

HTTP consumers answer the static URLs (greeting, ``info``, ``iframe*.html``) and the session
transports. A receiving transport (``xhr``, ``xhr_streaming``, ``eventsource``, ``htmlfile``,
``jsonp``) pulls frames from its session in a task while the consumer keeps listening for
``http.disconnect``, so a client that drops the request is noticed at once. WebSocket consumers carry
one session each (SockJS-framed, or raw text for ``/<prefix>/websocket``).

Django middleware does not run here, so CORS and the origin policy are applied by these consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from sockjs import protocol
from sockjs.binding import KEY_PARAM, Binding, Client, Refusal
from sockjs.session import Attach, Session
from stompengine.dispatch import DirectDispatchMixin  # one implementation, shipped with sockjs

if TYPE_CHECKING:
    from sockjs.endpoint import SockJSEndpoint

logger = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]

TEXT_PLAIN = b"text/plain; charset=UTF-8"
APPLICATION_JSON = b"application/json; charset=UTF-8"
APPLICATION_JAVASCRIPT = b"application/javascript; charset=UTF-8"
TEXT_HTML = b"text/html; charset=UTF-8"
# Exactly this: the protocol's tests compare it whole, and EventSource is UTF-8 by definition.
EVENT_STREAM = b"text/event-stream"
# How long a receiving request that finds another receiver on its session waits for that one to end
# before answering 2010: a client that aborts a poll and polls again at once races its own disconnect.
TAKE_OVER_GRACE = 1.0
# No channel layer: these consumers never join groups, and with a Redis layer every HTTP request
# would otherwise open its own layer channel and receive loop. The alias names no configured layer.
NO_CHANNEL_LAYER = "sockjs.no-channel-layer"


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """The first value of a request header, decoded as latin-1, or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def cookie(scope: dict[str, Any], name: str) -> str | None:
    """One cookie of the request, or None."""
    raw = header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip()
    return None


def same_origin(scope: dict[str, Any], origin: str) -> bool:
    """True when ``origin`` names the host (and port) this request was sent to."""
    host = header(scope, b"host")
    if not host or "://" not in origin:
        return False
    return origin.split("://", 1)[1].rstrip("/").lower() == host.strip().lower()


def _expires_in_a_year() -> bytes:
    return formatdate(time.time() + protocol.ONE_YEAR_SECONDS, usegmt=True).encode("ascii")


class _EndpointConsumerMixin:
    """Shared plumbing: the endpoint, the origin policy and the response helpers."""

    endpoint: SockJSEndpoint
    scope: dict[str, Any]

    def origin_allowed(self) -> bool:
        """A request without Origin (not a browser) is let through; others must match the policy.

        So is a same-origin request (Origin's host is the request's Host): that is a page this server
        served, i.e. the ``iframe.html`` the iframe transports (iframe-eventsource, iframe-htmlfile,
        iframe-xhr-polling) run in, never a foreign page.
        """
        origin = header(self.scope, b"origin")
        return origin is None or self.endpoint.allowed_origin(origin) or same_origin(self.scope, origin)


class _HttpConsumer(DirectDispatchMixin, _EndpointConsumerMixin, AsyncHttpConsumer):
    """An HTTP consumer whose ``handle`` may wait for a long time without missing ``http.disconnect``."""

    channel_layer_alias = NO_CHANNEL_LAYER
    cors = True

    def __init__(self, endpoint: SockJSEndpoint, **kwargs: Any) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.body_size = 0
        self.finished = False
        self.task: asyncio.Task[None] | None = None
        self.body_timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # A body trickled in a byte at a time would hold this consumer (and its connection) for as long
        # as the client likes. Servers that stream the body to the application (uvicorn) let us time it
        # out here; daphne hands over whole bodies only (its own deadline is chatproject/daphne_limits.py).
        self.body_timer = asyncio.get_running_loop().call_later(self.endpoint.body_timeout, self._body_timed_out)
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stop_body_timer()

    def _stop_body_timer(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def _body_timed_out(self) -> None:
        self.body_timer = None
        logger.warning(
            "SockJS request to %s: body not complete after %.1f s (slow client); answering 408",
            protocol.redact_session_path(self.scope.get("path", "")),
            self.endpoint.body_timeout,
        )
        detail = f"the request body did not arrive within {self.endpoint.body_timeout:g} seconds"
        body = json.dumps({"detail": detail}).encode("utf-8")
        self.task = asyncio.get_running_loop().create_task(
            self.respond(408, body, content_type=APPLICATION_JSON, headers=[(b"connection", b"close")])
        )

    async def http_request(self, message: dict[str, Any]) -> None:
        if self.task is not None:
            return  # answered already (408 above): the rest of a late body changes nothing
        chunk = message.get("body", b"")
        self.body_size += len(chunk)
        if self.body_size <= self.endpoint.max_request_body:
            self.body.append(chunk)
        if message.get("more_body"):
            return
        self._stop_body_timer()
        if self.body_size > self.endpoint.max_request_body:
            await self.respond(413, b"Request body too large.", content_type=TEXT_PLAIN)
            return
        self.task = asyncio.get_running_loop().create_task(self._handle_logged(b"".join(self.body)))

    async def _handle_logged(self, body: bytes) -> None:
        try:
            await self.handle(body)
        except asyncio.CancelledError:
            raise
        except Exception:
            path = protocol.redact_session_path(self.scope.get("path", ""))
            logger.exception("SockJS %s failed on %s", type(self).__name__, path)
            if not self.finished:
                with contextlib.suppress(Exception):
                    await self.respond(500, b"Internal error.", content_type=TEXT_PLAIN)

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.disconnect()
        raise StopConsumer()

    # --- Responses -------------------------------------------------------------------------------------

    def cors_headers(self) -> Headers:
        """CORS as the protocol wants it: echo the origin (``null`` too) with credentials; ``*`` without one.

        Only allowed origins get here (``origin_allowed`` runs first), so echoing is not an open door.
        """
        origin = header(self.scope, b"origin")
        if origin is None:
            headers = [(b"access-control-allow-origin", b"*")]
        else:
            headers = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
            ]
        headers.append((b"vary", b"Origin"))
        requested = header(self.scope, b"access-control-request-headers")
        if requested:
            headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
        return headers

    async def start(self, status: int, headers: Headers, *, content_type: bytes | None = None) -> None:
        """Send the status line and headers (plus CORS where the URL needs it)."""
        all_headers = list(headers)
        if content_type is not None:
            all_headers.append((b"content-type", content_type))
        if self.cors:
            all_headers.extend(self.cors_headers())
        await self.send_headers(status=status, headers=all_headers)

    async def write(self, data: bytes, *, more: bool) -> None:
        await self.send_body(data, more_body=more)
        if not more:
            self.finished = True

    async def respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: bytes | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """A complete response in one go, with its length (an HTTP/1.0 client needs it to keep the connection)."""
        all_headers = list(headers)
        if status not in (204, 304):
            all_headers.append((b"content-length", b"%d" % len(body)))
        await self.start(status, all_headers, content_type=content_type)
        await self.write(body, more=False)

    async def forbidden_origin(self) -> None:
        origin = header(self.scope, b"origin")
        path = protocol.redact_session_path(self.scope.get("path", ""))
        logger.warning("refused SockJS request to %s from origin %r", path, origin)
        body = json.dumps({"detail": f"origin {origin!r} is not allowed to use this endpoint"})
        # No CORS headers: the browser must not hand this answer to the foreign page.
        self.cors = False
        await self.respond(403, body.encode("utf-8"), content_type=APPLICATION_JSON)

    async def method_not_allowed(self, allowed: str) -> None:
        # No body and no content type, as the protocol's conformance suite checks.
        self.cors = False
        await self.respond(405, headers=[(b"allow", allowed.encode("ascii"))])

    async def not_bound(self, refusal: Refusal) -> None:
        """403 for a request that may not use the session it names (see sockjs.binding)."""
        logger.warning(
            "refused SockJS request to %s: %s",
            protocol.redact_session_path(self.scope.get("path", "")),
            refusal.name.lower().replace("_", " "),
        )
        detail = refusal.value.format(prefix="/" + self.endpoint.prefix)
        body = json.dumps({"detail": detail}).encode("utf-8")
        await self.respond(403, body, content_type=APPLICATION_JSON, headers=self.no_cache())

    async def not_found(self) -> None:
        self.cors = False
        await self.respond(404, b"Not found.", content_type=TEXT_PLAIN)

    async def preflight(self, methods: str) -> None:
        """The answer to an OPTIONS request: cacheable for a year, with the allowed methods."""
        headers = [
            (b"cache-control", b"public, max-age=%d" % protocol.ONE_YEAR_SECONDS),
            (b"expires", _expires_in_a_year()),
            (b"access-control-max-age", b"%d" % protocol.ONE_YEAR_SECONDS),
            (b"access-control-allow-methods", methods.encode("ascii")),
        ]
        await self.respond(204, headers=headers)

    def no_cache(self) -> Headers:
        return [(b"cache-control", protocol.NO_CACHE.encode("ascii"))]

    def session_cookie(self) -> Headers:
        """``JSESSIONID`` for load balancers' sticky sessions, when the endpoint asks for it."""
        if not self.endpoint.cookie_needed:
            return []
        value = cookie(self.scope, "JSESSIONID") or "dummy"
        attributes = "; SameSite=None; Secure" if self.scope.get("scheme") == "https" else ""
        return [(b"set-cookie", f"JSESSIONID={value}; path=/{attributes}".encode("latin-1"))]


class GreetingConsumer(_HttpConsumer):
    """``/<prefix>`` and ``/<prefix>/``: the protocol's greeting."""

    cors = False

    async def handle(self, body: bytes) -> None:
        if self.scope["method"] not in ("GET", "HEAD"):
            await self.method_not_allowed("GET")
            return
        await self.respond(200, protocol.GREETING.encode("ascii"), content_type=TEXT_PLAIN)


class NotFoundConsumer(_HttpConsumer):
    """Any other path under the prefix: 404 here, so nothing under it reaches Django."""

    cors = False

    async def handle(self, body: bytes) -> None:
        await self.not_found()


class InfoConsumer(_HttpConsumer):
    """``/<prefix>/info``: capabilities and entropy; public, never redirected, never cached."""

    async def handle(self, body: bytes) -> None:
        method = self.scope["method"]
        if method not in ("GET", "OPTIONS"):
            await self.method_not_allowed("OPTIONS, GET")
            return
        if not self.origin_allowed():
            await self.forbidden_origin()
            return
        if method == "OPTIONS":
            await self.preflight("OPTIONS, GET")
            return
        data = protocol.info(websocket=self.endpoint.websocket_enabled, cookie_needed=self.endpoint.cookie_needed)
        await self.respond(200, data, content_type=APPLICATION_JSON, headers=self.no_cache())


class KeyConsumer(_HttpConsumer):
    """``POST /<prefix>/key``: a new session key (see sockjs.binding); public, never cached."""

    async def handle(self, body: bytes) -> None:
        method = self.scope["method"]
        if method not in ("POST", "OPTIONS"):
            await self.method_not_allowed("OPTIONS, POST")
            return
        if not self.origin_allowed():
            await self.forbidden_origin()
            return
        if method == "OPTIONS":
            await self.preflight("OPTIONS, POST")
            return
        data = json.dumps({"key": self.endpoint.keys.issue(), "param": KEY_PARAM}).encode("ascii")
        await self.respond(200, data, content_type=APPLICATION_JSON, headers=self.no_cache())


class IframeConsumer(_HttpConsumer):
    """``/<prefix>/iframe*.html``: the page for iframe-based transports, cacheable, with ETag/304."""

    cors = False

    async def handle(self, body: bytes) -> None:
        if self.scope["method"] not in ("GET", "HEAD"):
            await self.method_not_allowed("GET")
            return
        page = self.endpoint.iframe
        headers = [
            (b"cache-control", b"public, max-age=%d" % protocol.ONE_YEAR_SECONDS),
            (b"expires", _expires_in_a_year()),
            (b"etag", page.etag.encode("ascii")),
        ]
        if header(self.scope, b"if-none-match") == page.etag:
            await self.respond(304, headers=headers)
            return
        await self.respond(200, page.body, content_type=TEXT_HTML, headers=headers)


class WebsocketOverHttpConsumer(_HttpConsumer):
    """A plain HTTP request to a WebSocket URL (no ``Upgrade: websocket``): 400 or 405, as the protocol says."""

    cors = False

    def __init__(self, endpoint: SockJSEndpoint, raw: bool = False, **kwargs: Any) -> None:
        super().__init__(endpoint, **kwargs)

    async def handle(self, body: bytes) -> None:
        await websocket_over_http(self)


async def websocket_over_http(consumer: _HttpConsumer) -> None:
    if not consumer.endpoint.websocket_enabled:
        await consumer.not_found()
    elif consumer.scope["method"] != "GET":
        await consumer.method_not_allowed("GET")
    else:
        connection = (header(consumer.scope, b"connection") or "").lower()
        upgrade = (header(consumer.scope, b"upgrade") or "").lower()
        message = (
            '"Connection" must be "Upgrade".'
            if upgrade == "websocket" and "upgrade" not in connection
            else 'Can "Upgrade" only to "WebSocket".'
        )
        await consumer.respond(400, message.encode("ascii"), content_type=TEXT_PLAIN)


@dataclass(frozen=True)
class Receiving:
    """How one receiving transport frames its response."""

    name: str  # the session's transport name, as sockjs-client calls it
    method: str
    content_type: bytes
    streaming: bool  # keep the response open for more frames (until the response limit)
    options: bool = False  # answers CORS preflights


RECEIVING = {
    "xhr": Receiving("xhr-polling", "POST", APPLICATION_JAVASCRIPT, streaming=False, options=True),
    "xhr_streaming": Receiving("xhr-streaming", "POST", APPLICATION_JAVASCRIPT, streaming=True, options=True),
    "eventsource": Receiving("eventsource", "GET", EVENT_STREAM, streaming=True),
    "htmlfile": Receiving("htmlfile", "GET", TEXT_HTML, streaming=True),
    "jsonp": Receiving("jsonp-polling", "GET", APPLICATION_JAVASCRIPT, streaming=False),
}


class TransportConsumer(_HttpConsumer):
    """``/<prefix>/<server>/<session>/<transport>``: the HTTP transports of one session."""

    async def handle(self, body: bytes) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        transport = kwargs["transport"]
        session_id = kwargs["session_id"]
        method = self.scope["method"]
        if transport == "websocket":
            self.cors = False
            await websocket_over_http(self)
            return
        if transport in ("xhr_send", "jsonp_send"):
            allowed = "OPTIONS, POST" if transport == "xhr_send" else "POST"
        else:
            spec = RECEIVING[transport]
            allowed = f"OPTIONS, {spec.method}" if spec.options else spec.method
        if method not in allowed.split(", "):
            await self.method_not_allowed(allowed)
            return
        if not self.origin_allowed():
            await self.forbidden_origin()
            return
        if method == "OPTIONS":
            await self.preflight(allowed)
            return
        if transport == "xhr_send":
            await self.receive_messages(session_id, body, jsonp=False)
        elif transport == "jsonp_send":
            await self.receive_messages(session_id, body, jsonp=True)
        else:
            await self.stream_frames(session_id, RECEIVING[transport])

    async def receive_messages(self, session_id: str, body: bytes, *, jsonp: bool) -> None:
        """``xhr_send`` / ``jsonp_send``: hand the client's messages to the session's handler."""
        headers = self.no_cache() + self.session_cookie()
        try:
            if jsonp:
                messages = protocol.decode_jsonp_send(body, header(self.scope, b"content-type") or "")
            else:
                messages = protocol.decode_xhr_send(body)
        except protocol.PayloadError as exc:
            await self.respond(500, str(exc).encode("utf-8"), content_type=TEXT_PLAIN, headers=headers)
            return
        session = self.endpoint.sessions.get(session_id)
        if session is None:
            await self.respond(404, b"Session not found.", content_type=TEXT_PLAIN, headers=headers)
            return
        client = Client.from_scope(self.scope, self.endpoint.peer_address)
        refusal = session.binding.refusal(client) if session.binding else None
        if refusal is not None:
            await self.not_bound(refusal)
            return
        # Shielded: a client that gives up on its xhr_send must not cancel the handler halfway
        # through a message (a STOMP SEND being stored, say).
        await asyncio.shield(session.deliver(messages))
        if jsonp:
            # Some browsers mishandle 204 on the form-post iframe, hence a tiny 200 body.
            await self.respond(200, b"ok", content_type=TEXT_PLAIN, headers=headers)
        else:
            # text/plain although empty: Firefox otherwise parses the answer as XML and complains.
            await self.respond(204, content_type=TEXT_PLAIN, headers=headers)

    async def bound_session(self, session_id: str, spec: Receiving) -> Session | None:
        """The session this receiving request may use (created if new), or None once refused with 403.

        Every receiving request passes the binding, also the one that follows an aborted poll: an
        aborted receiver ends its session, and for the session's disconnect delay only the client it
        was bound to may open a new one under the same id (the take-over).
        """
        client = Client.from_scope(self.scope, self.endpoint.peer_address)
        session = self.endpoint.sessions.get(session_id)
        binding = session.binding if session is not None else self.endpoint.sessions.ended_binding(session_id)
        refusal = binding.refusal(client) if binding is not None else None
        if refusal is not None:
            await self.not_bound(refusal)
            return None
        if session is not None:
            return session
        if client.key is not None and not self.endpoint.keys.issued(client.key):
            await self.not_bound(Refusal.FOREIGN_KEY)
            return None
        return self.endpoint.sessions.create(
            session_id,
            transport=spec.name,
            scope=self.scope,
            disconnect_delay=self.endpoint.disconnect_delay,
            binding=Binding(client, bind_peer=self.endpoint.bind_peer),
            **self.endpoint.session_options(),
        )

    async def stream_frames(self, session_id: str, spec: Receiving) -> None:
        """A receiving transport: prelude, then frames pulled from the session until the response ends."""
        wrap: Callable[[str], str]
        prelude = ""
        if spec.name in ("htmlfile", "jsonp-polling"):
            try:
                callback = protocol.validate_callback(parse_qs(self.scope.get("query_string", b"").decode("latin-1")))
            except protocol.CallbackError as exc:
                await self.respond(500, str(exc).encode("utf-8"), content_type=TEXT_PLAIN, headers=self.no_cache())
                return
            if spec.name == "htmlfile":
                wrap, prelude = protocol.wrap_htmlfile, protocol.htmlfile_prelude(callback)
            else:
                wrap = lambda frame: protocol.wrap_jsonp(frame, callback)  # noqa: E731
        elif spec.name == "eventsource":
            wrap, prelude = protocol.wrap_eventsource, protocol.EVENTSOURCE_PRELUDE
        else:
            wrap = protocol.wrap_xhr
            prelude = protocol.XHR_STREAMING_PRELUDE if spec.streaming else ""

        session = await self.bound_session(session_id, spec)
        if session is None:
            return
        attached = session.attach(self)
        if attached is Attach.REFUSED and await session.receiver_gone(TAKE_OVER_GRACE):
            # The other receiver was a request its client had just aborted: take the session over (a
            # new one under the same id, held to the same binding, if the abort ended it).
            session = await self.bound_session(session_id, spec)
            if session is None:
                return
            attached = session.attach(self)
        headers = self.no_cache() + self.session_cookie()
        if spec.name == "jsonp-polling":
            headers.append((b"x-content-type-options", b"nosniff"))
        if attached is Attach.REFUSED:
            await self.start(200, headers, content_type=spec.content_type)
            frame = protocol.close_frame(*protocol.ANOTHER_CONNECTION)
            await self.write(prelude.encode("utf-8"), more=True)
            await self.write(wrap(frame).encode("utf-8"), more=False)
            return
        sent = 0
        try:
            await self.start(200, headers, content_type=spec.content_type)
            # The first body message makes daphne send the headers, even with an empty prelude.
            await self.write(prelude.encode("utf-8"), more=True)
            while True:
                frame = await session.next_frame(self.endpoint.heartbeat_interval)
                data = wrap(frame).encode("utf-8")
                sent += len(data)
                # Polling answers one frame; streaming closes past the limit so that the browser
                # frees what the response accumulated, and reconnects.
                last = protocol.is_close_frame(frame) or not spec.streaming or sent >= self.endpoint.response_limit
                await self.write(data, more=not last)
                if last:
                    break
        except asyncio.CancelledError:
            # http.disconnect: the client dropped the request mid-response.
            session.detach(self, aborted=True)
            raise
        session.detach(self, aborted=False)


class _WebsocketConsumer(DirectDispatchMixin, _EndpointConsumerMixin, AsyncWebsocketConsumer):
    """One WebSocket carrying one session, which ends with the socket."""

    channel_layer_alias = NO_CHANNEL_LAYER
    transport_name = "websocket"

    def __init__(self, endpoint: SockJSEndpoint, **kwargs: Any) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.session: Session | None = None
        self.pump: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        if not self.endpoint.websocket_enabled:
            await self.close()
            return
        if not self.origin_allowed():
            logger.warning(
                "refused SockJS WebSocket to %s from origin %r",
                protocol.redact_session_path(self.scope.get("path", "")),
                header(self.scope, b"origin"),
            )
            await self.close()
            return
        await self.accept()
        # A WebSocket session is not registered: its lifetime is the socket's, and the protocol lets
        # two sockets use the same session id at once.
        self.session = Session(
            transport=self.transport_name, scope=self.scope, disconnect_delay=None, **self.endpoint.session_options()
        )
        self.session.attach(self)
        self.pump = asyncio.get_running_loop().create_task(self._pump_logged(self.session))

    async def _pump_logged(self, session: Session) -> None:
        try:
            await self.pump_frames(session)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Typically a send racing the client's disconnect; the disconnect handler cleans up.
            logger.debug("SockJS WebSocket pump ended with an error", exc_info=True)

    async def pump_frames(self, session: Session) -> None:
        raise NotImplementedError

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None:
            return
        if text_data is None:
            try:
                text_data = (bytes_data or b"").decode("utf-8")
            except UnicodeDecodeError:
                await self.broken_framing()
                return
        await self.deliver(self.session, text_data)

    async def deliver(self, session: Session, text: str) -> None:
        raise NotImplementedError

    async def broken_framing(self) -> None:
        # The protocol wants the socket ended for undecodable input, with no SockJS close frame: a
        # WebSocket close (1000: autobahn lets an application send only 1000 and 3000-4999, and
        # refusing 1002 used to drop the TCP connection instead). Stop the pump first, or it would
        # deliver the session's own ``c[...]`` frame before the socket ends.
        await self.stop_pump()
        await self.close(code=1000, reason="Broken framing.")
        if self.session is not None:
            self.session.interrupt()

    async def stop_pump(self) -> None:
        if self.pump is not None and self.pump is not asyncio.current_task():
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pump

    async def disconnect(self, code: int) -> None:
        await self.stop_pump()
        if self.session is not None:
            self.session.detach(self, aborted=True)


class SockJSWebsocketConsumer(_WebsocketConsumer):
    """``/<prefix>/<server>/<session>/websocket``: SockJS frames (``o``, ``h``, ``a[...]``, ``c[...]``)."""

    async def pump_frames(self, session: Session) -> None:
        while True:
            frame = await session.next_frame(self.endpoint.heartbeat_interval)
            await self.send(text_data=frame)
            if protocol.is_close_frame(frame):
                await self.close(code=1000)
                return

    async def deliver(self, session: Session, text: str) -> None:
        try:
            messages = protocol.decode_websocket(text)
        except protocol.PayloadError:
            await self.broken_framing()
            return
        if messages:
            await session.deliver(messages)


class RawWebsocketConsumer(_WebsocketConsumer):
    """``/<prefix>/websocket``: plain WebSocket text, one message per frame, no SockJS framing."""

    transport_name = "websocket-raw"

    async def pump_frames(self, session: Session) -> None:
        while True:
            messages = await session.next_messages()
            if messages is None:
                code = session.close_code or 1000
                # Only 1000 and 3000-4999 may be sent by an application in a WebSocket close frame.
                # The reason travels too (``Go away!``); daphne passes it on with chatproject's patch.
                await self.close(
                    code=code if code == 1000 or 3000 <= code <= 4999 else 1000, reason=session.close_reason or None
                )
                return
            for text in messages:
                await self.send(text_data=text)

    async def deliver(self, session: Session, text: str) -> None:
        await session.deliver([text])


__all__ = [
    "GreetingConsumer",
    "IframeConsumer",
    "InfoConsumer",
    "KeyConsumer",
    "NotFoundConsumer",
    "RawWebsocketConsumer",
    "SockJSWebsocketConsumer",
    "TransportConsumer",
    "WebsocketOverHttpConsumer",
]
