"""daphne with write backpressure: ``python -m chatproject.daphne_server <daphne arguments>``.

Takes exactly daphne's command line. The one difference: every HTTP and WebSocket scope carries
``scope["extensions"]["chat.write_buffer"]["pending_bytes"]``, the bytes of that connection still in
Twisted's socket write buffer, which the STOMP connection adds to its own queue to bound a client
that stops reading (stompengine/realtime/backpressure.py). Plain ``daphne`` works too, but then only the
connection's own queue is bounded and a non-reading client's backlog grows in daphne unchecked.

It also feeds an HTTP request's body to the application chunk by chunk from the file Twisted spooled it
to, as the application reads it, instead of queueing all of it in memory at once (``LazyBodyQueue``): a
large upload no longer grows the worker by its size.

autobahn formats its whole configuration with ``pprint`` for a debug line on every new WebSocket, even
with debug logging off (0.48 ms, half of a handshake's CPU here): the formatting is deferred until the
line is written (``_Deferred``), which it never is at our log level.

It keeps Twisted's listen backlog (50) on purpose: in a 10,000-client storm a backlog of 2048 let daphne
take thousands of handshakes at once, and then every client's CONNECT and SUBSCRIBEs crawled (none of
10,000 subscribed after 30 s, against 5,673 with 50). Past 50 the kernel drops SYNs, which clients resend
after 1, 3, 7… s, while the worker finishes the clients it took.

It also writes WebSocket frames without autobahn's per-write debug-log arguments, and sends them at once
when nothing waits in Twisted's buffer instead of one reactor turn later (``install_send_fast_path``).

It also gives a closing WebSocket ``CLOSE_HANDSHAKE_TIMEOUT`` seconds (autobahn's default: 1) before the
TCP connection is aborted, so a client that was slow, not dead, still reads the ERROR frame that
explains the close; the abort then frees the buffer.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pprint import pformat
from typing import Any

import autobahn.websocket.protocol as autobahn_protocol
from daphne.cli import CommandLineInterface
from daphne.server import Server
from twisted.internet import tcp

from stompengine.realtime.backpressure import EXTENSION, write_buffer_extension

logger = logging.getLogger(__name__)

CLOSE_HANDSHAKE_TIMEOUT = 5.0


class _Deferred:
    """``pformat(obj)`` when formatted, not before (autobahn's per-connection debug line)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __str__(self) -> str:
        return pformat(self.obj)


def twisted_pending_bytes(transport: Any) -> int:
    """Bytes a Twisted transport has accepted but not yet written to its socket (0 when unknown).

    Reads ``twisted.internet.abstract.FileDescriptor``'s buffer: ``dataBuffer`` from ``offset`` plus the
    writes not yet joined into it (``_tempDataLen``). A TLS transport wraps the TCP one (``.transport``).
    """
    for _ in range(3):
        if transport is None:
            return 0
        buffer = getattr(transport, "dataBuffer", None)
        if buffer is not None:
            return len(buffer) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)
        transport = getattr(transport, "transport", None)
    return 0


def protocol_pending_bytes(protocol: Any) -> int:
    """``twisted_pending_bytes`` of a daphne protocol's current transport (an HTTP request or a WebSocket)."""
    return twisted_pending_bytes(getattr(protocol, "transport", None))


class _PendingChunk:
    """A body chunk not read yet: daphne sees its length, the application gets its bytes when it asks."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


class _LazyContent:
    """Stands in for a request's body file while daphne queues the body, handing out ``_PendingChunk``s.

    daphne reads the whole body (which Twisted spooled to a temporary file) into its application queue at
    once, so a 50 MB upload sat in memory as bytes, many times over once allocated in 8 kB pieces
    (bench/upload_rss.py measured +650 MB). With this, the queue holds placeholders and ``LazyBodyQueue``
    reads each chunk from the file when the application takes it.
    """

    def __init__(self, content: Any) -> None:
        self.content = content
        content.seek(0, 2)
        self.left = content.tell()
        content.seek(0)

    @property
    def closed(self) -> bool:
        return self.content.closed

    def read(self, size: int = -1) -> _PendingChunk:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return _PendingChunk(size)

    def seek(self, *args: Any) -> Any:
        return self.content.seek(*args)

    def close(self) -> None:
        self.content.close()


class LazyBodyQueue(asyncio.Queue):
    """An application's input queue that reads ``_PendingChunk`` bodies from the request's file on ``get``."""

    def __init__(self, content: Any) -> None:
        super().__init__()
        self.content = content

    async def get(self) -> Any:
        message = await super().get()
        body = message.get("body") if message.get("type") == "http.request" else None
        if isinstance(body, _PendingChunk):
            try:
                data = self.content.read(body.size)
            except ValueError:  # Twisted closed the file: the client went away before the body was read
                return {"type": "http.disconnect"}
            message = {**message, "body": data}
        return message


class BackpressureServer(Server):
    """daphne's Server, putting the write-buffer extension into every scope it creates, and feeding each
    HTTP request's body to the application as it reads it (``LazyBodyQueue``)."""

    def protocol_connected(self, protocol: Any) -> None:
        """As daphne's, and no parse of form bodies by Twisted itself (daphne never reads ``request.args``).

        Twisted's ``Request.requestReceived`` reads a multipart/form-data POST body whole into memory and
        parses it with the ``email`` package: a 50 MB upload cost the worker about 600 MB at its peak
        (bench/upload_rss.py; tracemalloc showed the copies). The application parses the body itself.
        """
        if hasattr(protocol, "_parsePOSTFormSubmission"):
            protocol._parsePOSTFormSubmission = False
        super().protocol_connected(protocol)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        """As daphne's, plus ``scope["extensions"]["chat.write_buffer"]`` and the lazily read body."""
        extensions = scope.setdefault("extensions", {})
        extensions[EXTENSION] = write_buffer_extension(partial(protocol_pending_bytes, protocol))
        if hasattr(protocol, "closeHandshakeTimeout"):
            protocol.closeHandshakeTimeout = CLOSE_HANDSHAKE_TIMEOUT
        content = getattr(protocol, "content", None) if scope.get("type") == "http" else None
        if content is None or isinstance(content, _LazyContent) or content.closed:
            return super().create_application(protocol, scope)
        # daphne's own create_application (4.2.3), with a LazyBodyQueue for its plain asyncio.Queue.
        assert "application_instance" not in self.connections[protocol]
        queue = LazyBodyQueue(content)
        scope.setdefault("asgi", {"version": "3.0"})
        instance = self.application(scope=scope, receive=queue.get, send=partial(self.handle_reply, protocol))
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            instance, loop=asyncio.get_event_loop()
        )
        protocol.content = _LazyContent(content)  # daphne's loop now queues placeholders
        return queue


def write_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, but sent at once when Twisted holds nothing for this TCP socket yet.

    Twisted's TCP transport only buffers a write and has the reactor watch the socket for writability
    (``epoll_ctl``), sends in a later reactor turn and stops watching (``epoll_ctl`` again): three system
    calls and a reactor event per write, about a third of a daphne worker's main thread in the chat
    benchmark (py-spy). A STOMP connection already joins what one loop iteration gives it into one write,
    and the socket's kernel buffer nearly always has room for it now. What the kernel does not take goes
    to Twisted's buffer as before, and every later write queues behind it until Twisted has sent it all
    (the HTTP channel registered as the socket's producer is paused and resumed by that buffer alone, so an
    empty one leaves it be). TLS or a closing connection: Twisted's own path.
    """
    if (
        isinstance(transport, tcp.Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._tempDataLen
        and len(transport.dataBuffer) == transport.offset
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:  # full (EWOULDBLOCK) or gone: Twisted's write finds out and handles it as usual
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def install_send_fast_path() -> None:
    """autobahn's ``sendData`` without its debug-log call on the common path, written at once (``write_now``),
    and its ``dataReceived`` without that call either (idempotent).

    autobahn builds that call's arguments on every write whether debug logging is on or not: ``hltype``
    styles the method's qualified name through click (two ``click.style`` calls and an ``inspect`` check)
    and ``hlval`` the peer and the length, several microseconds per WebSocket frame written, 3 % of a
    daphne worker's samples in the chat benchmark (py-spy, docs/performance.md). Everything else is
    autobahn's own: a synchronous or chopped write, or one behind queued data, goes through the original.
    """
    from daphne.ws_protocol import WebSocketProtocol

    original = WebSocketProtocol.sendData
    if getattr(original, "_chat_fast_path", False):
        return
    opening = (WebSocketProtocol.STATE_CONNECTING, WebSocketProtocol.STATE_PROXY_CONNECTING)

    def sendData(self: Any, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:  # noqa: N802 - autobahn's name
        if sync or (chopsize and chopsize > 0) or self.send_queue:
            original(self, data, sync, chopsize)
            return
        write_now(self.transport, data)
        if self.state == WebSocketProtocol.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif self.state in opening:
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)
        if self.logOctets:
            self.logTxOctets(data, False)

    def dataReceived(self: Any, data: bytes) -> None:  # noqa: N802 - autobahn's name
        # autobahn's twisted adapter, minus the same debug-log arguments built for every read of the socket.
        self._dataReceived(data)

    sendData._chat_fast_path = True  # type: ignore[attr-defined]
    WebSocketProtocol.sendData = sendData
    WebSocketProtocol.dataReceived = dataReceived


class BackpressureCommandLineInterface(CommandLineInterface):
    """daphne's command line, running BackpressureServer."""

    server_class = BackpressureServer


def defer_autobahn_config_log() -> None:
    """autobahn's per-connection ``pformat`` of its configuration, only when its debug line is written."""
    autobahn_protocol.pformat = _Deferred  # type: ignore[assignment]


def main() -> None:
    """Run daphne with the adapter (the same arguments as ``daphne``)."""
    defer_autobahn_config_log()
    install_send_fast_path()
    BackpressureCommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
