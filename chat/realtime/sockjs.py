"""Runs a StompConnection over a SockJS session (``sockjs.session.Handler``): STOMP frames as UTF-8 text.

Mount it at /ws (in ``chatproject/sockjs_mounts.py``)::

    SockJSEndpoint("ws", StompSockJSHandler, allowed_origin=origin_matcher().allows, raw_websocket=False, ...)

SockJS carries text only, so bodies that are not UTF-8 (possible when a raw WebSocket client publishes
binary data) reach SockJS subscribers with U+FFFD replacements; the session's own queue limit is the
slow-consumer bound here, since writes to a SockJS session only append to its queue.
"""

from __future__ import annotations

from typing import Any

from chat.realtime.connection import StompConnection

SOCKJS_CLOSE_REASON = "Normal closure"


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


class StompSockJSHandler:
    """The SockJS handler for the STOMP endpoint: one StompConnection per SockJS session."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.connection: StompConnection | None = None

    async def on_open(self) -> None:
        """Create the STOMP connection (the CONNECT timeout starts now)."""
        self.connection = StompConnection(SockJSTransport(self._session), scope=self._session.scope)
        await self.connection.open()

    async def on_message(self, text: str) -> None:
        """One SockJS message: any number of (partial) STOMP frames."""
        if self.connection is not None:
            await self.connection.data_received(text.encode("utf-8"))

    async def on_close(self) -> None:
        """The SockJS session ended."""
        if self.connection is not None:
            await self.connection.connection_lost()
