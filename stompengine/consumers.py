"""The raw STOMP-over-WebSocket consumer: moves bytes between the socket and a StompConnection, nothing more.

It replaces ``AsyncConsumer``'s receive loop with a plain one: Channels' loop creates a task for every
incoming message and hops to a thread for ``close_old_connections`` before every handler, which costs
about half the throughput of small frames. Database work happens only inside
``database_sync_to_async`` calls (authentication, application handlers), which close stale
connections themselves. There is no channel-layer channel per connection either: the broker delivers
to the connection directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from channels.sessions import InstanceSessionWrapper

from stompengine.connection import StompConnection
from stompengine.dispatch import DirectDispatchMixin
from stompengine.realtime.backpressure import scope_pending_bytes
from stompengine.stomp.session import choose_subprotocol

logger = logging.getLogger(__name__)
# ASGI callables, as Channels passes them.
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def server_send(send: Any) -> Any:
    """The server's own ``send`` from under Channels' SessionMiddleware wrapper.

    The wrapper only acts on ``http.response.start`` (saving the session, setting its cookie), but
    costs a coroutine call and two lazy-session lookups on every WebSocket frame we write.
    """
    wrapper = getattr(send, "__self__", None)
    if isinstance(wrapper, InstanceSessionWrapper):
        return wrapper.real_send
    return send


class WebSocketTransport:
    """StompConnection's transport over an ASGI WebSocket: text frames when the bytes are UTF-8, else binary.

    Has ``pending_bytes()`` (the server's socket write buffer for this connection) only when the server
    gives it (chatproject/daphne_server.py, chatproject/uvicorn_ws.py): StompConnection looks it up with
    ``getattr`` and bounds its own queue alone without it.
    """

    __slots__ = ("_send", "pending_bytes")

    def __init__(self, send: Any, pending_bytes: Callable[[], int] | None = None) -> None:
        self._send = send
        if pending_bytes is not None:
            self.pending_bytes = pending_bytes

    async def send(self, data: bytes) -> None:
        """Send one WebSocket message holding whole STOMP frames."""
        try:
            await self._send({"type": "websocket.send", "text": data.decode("utf-8")})
        except UnicodeDecodeError:
            await self._send({"type": "websocket.send", "bytes": data})

    async def close(self, code: int) -> None:
        """Close the WebSocket."""
        await self._send({"type": "websocket.close", "code": code})


#: Handshake headers a connection keeps after the WebSocket accept (the client's address behind proxies and
#: its origin); the others are dropped from the scope, which an idle connection holds for its whole life.
KEPT_HEADERS = frozenset({b"origin", b"x-forwarded-for", b"x-forwarded-proto", b"x-real-ip", b"forwarded"})


class StompWebSocketConsumer(DirectDispatchMixin, AsyncConsumer):  # type: ignore[misc]  # channels is untyped
    """STOMP 1.0-1.2 over a raw WebSocket (``/ws`` and ``/ws/websocket``), subprotocols ``v1x.stomp``."""

    channel_layer_alias = "__stomp_has_no_channel_layer__"
    connection: StompConnection | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        self.channel_layer = None
        self.base_send = server_send(send)
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            # Daphne cancels every application on SIGTERM and waits for them: close like a server should
            # (the frame in progress finished, ERROR code:shutdown, a close frame) rather than drop the socket.
            if self.connection is not None:
                await self.connection.shutdown()
            raise

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Accept, choosing the best offered STOMP subprotocol, and start the STOMP connection."""
        subprotocol = choose_subprotocol(self.scope.get("subprotocols") or ())
        await self.base_send({"type": "websocket.accept", "subprotocol": subprotocol})
        # The handshake is done: the scope lives as long as the idle connection, its headers are read later
        # only for the client's address and origin. The rest (cookies, keys, user agent) is ~1-2 kB each.
        headers = self.scope.get("headers")
        if headers:
            kept = [(name, value) for name, value in headers if name in KEPT_HEADERS]
            if isinstance(headers, list):
                # In place: the server's scope and the middlewares' copies share this list, and some of them
                # live as long as the connection (uvicorn's proxy-headers middleware keeps its frame).
                headers[:] = kept
            else:
                self.scope["headers"] = kept
        transport = WebSocketTransport(self.base_send, scope_pending_bytes(self.scope))
        self.connection = StompConnection(transport, scope=self.scope, subprotocol=subprotocol)
        await self.connection.open()

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Hand text or binary frames to the STOMP connection as bytes."""
        if self.connection is None:
            return
        data = message.get("bytes")
        if data is None:
            data = (message.get("text") or "").encode("utf-8")
        await self.connection.data_received(data)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """The socket is gone."""
        if self.connection is not None:
            await self.connection.connection_lost()
        raise StopConsumer
