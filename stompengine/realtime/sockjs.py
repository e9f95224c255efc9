"""Runs a StompConnection over a SockJS session (``sockjs.session.Handler``): STOMP frames as UTF-8 text.

Mount it at /ws (in ``chatproject/sockjs_mounts.py``)::

    SockJSEndpoint("ws", StompSockJSHandler, allowed_origin=origin_matcher().allows, raw_websocket=False, ...)

SockJS carries text only, so bodies that are not UTF-8 (possible when a raw WebSocket client publishes
binary data) reach SockJS subscribers with U+FFFD replacements. Writes to a SockJS session only append
to its queue, so a client that stops polling (or reading its stream) would grow that queue without
limit: ``SockJSTransport.pending_bytes`` reports it, plus what the server's socket still holds for the
session's current receiver, and the StompConnection ends the session past its bound (``ERROR slow
consumer``; the session's own message-count limit stays as a second net).
"""

from __future__ import annotations

import contextlib
from typing import Any

from stompengine import metrics
from stompengine.connection import StompConnection

SOCKJS_CLOSE_REASON = "Normal closure"
# The server's write-buffer figure for a scope (chatproject/daphne_server.py provides it under daphne).
WRITE_BUFFER_EXTENSION = "chat.write_buffer"


class SockJSTransport:
    """StompConnection's transport over a SockJS session."""

    __slots__ = ("_session",)

    def __init__(self, session: Any) -> None:
        self._session = session

    async def send(self, data: bytes) -> None:
        """Queue whole STOMP frames as one SockJS message."""
        await self._session.send(data.decode("utf-8", errors="replace"))

    async def close(self, code: int) -> None:
        """Close the SockJS session (``c[1000,"Normal closure"]``)."""
        await self._session.close(code, SOCKJS_CLOSE_REASON)

    def pending_bytes(self) -> int:
        """Bytes given to ``send`` that the client has not taken: the session's queue (no poll has fetched
        it, no stream has written it) plus the server's socket buffer of the receiver now attached."""
        total = getattr(self._session, "queued_bytes", 0)
        receiver = getattr(self._session, "receiver", None)
        scope = getattr(receiver, "scope", None) or {}
        extension = scope.get("extensions", {}).get(WRITE_BUFFER_EXTENSION)
        if extension is not None:
            # A closed transport cannot tell; the session's own figure still stands.
            with contextlib.suppress(Exception):
                total += int(extension["pending_bytes"]())
        return total


class StompSockJSHandler:
    """The SockJS handler for the STOMP endpoint: one StompConnection per SockJS session."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.connection: StompConnection | None = None
        self._gauge: Any = None

    async def on_open(self) -> None:
        """Create the STOMP connection (the CONNECT timeout starts now)."""
        self.connection = StompConnection(SockJSTransport(self._session), scope=self._session.scope)
        self._gauge = metrics.SOCKJS_SESSIONS.labels(getattr(self._session, "transport", None) or "unknown")
        self._gauge.inc()
        await self.connection.open()

    async def on_message(self, text: str) -> None:
        """One SockJS message: any number of (partial) STOMP frames."""
        if self.connection is not None:
            await self.connection.data_received(text.encode("utf-8"))

    async def on_close(self) -> None:
        """The SockJS session ended."""
        if self._gauge is not None:
            self._gauge, gauge = None, self._gauge
            gauge.dec()
        if self.connection is not None:
            await self.connection.connection_lost()
