"""uvicorn WebSocket protocols with write backpressure: ``uvicorn --ws chatproject.uvicorn_ws:SansIOProtocol``.

Same as uvicorn's ``websockets-sansio`` implementation (the one the project runs; uvicorn deprecates the
legacy ``websockets`` one), plus ``scope["extensions"]["chat.write_buffer"]["pending_bytes"]``: the asyncio
transport's ``get_write_buffer_size()`` (stompengine/realtime/backpressure.py). Without it uvicorn still pauses
``send`` above the transport's high-water mark, so the backlog stays in the STOMP connection's own queue,
which is bounded either way; with it the count is exact.

Idle memory: uvicorn gives every connection an ``asyncio.Queue`` (three deques and an Event with a fourth)
and an ``asyncio.Event`` (a fifth): about 3.8 kB of empty deques (760 bytes each on CPython 3.11) per
idle connection, a fifth of its whole cost. ``LightQueue`` and ``LightEvent`` do what uvicorn asks of them
(``put_nowait``/``get``/``empty``; ``set``/``clear``/``wait``) with one list, created only while a
message waits, and at most one future (docs/memory.md).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from stompengine.realtime.backpressure import EXTENSION, write_buffer_extension


def transport_pending_bytes(transport: Any) -> int:
    """Bytes in an asyncio transport's write buffer (0 once it is closing or gone)."""
    if transport is None or transport.is_closing():
        return 0
    return transport.get_write_buffer_size()


class LightQueue:
    """An unbounded FIFO for one consumer (uvicorn's receive queue): ``put_nowait``, ``get``, ``empty``."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] | None = None  # the common idle state holds nothing at all
        self._waiter: asyncio.Future[None] | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)  # uvicorn pauses reading after each message: this stays short
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        items = self._items
        item = items.pop(0)
        if not items:
            self._items = None
        return item


class LightEvent:
    """``asyncio.Event``'s ``set``/``clear``/``is_set``/``wait`` with a future only while someone waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class SansIOProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, with the write-buffer extension in the scope and light queues."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = LightQueue()  # type: ignore[assignment]  # the subset of asyncio.Queue uvicorn uses
        writable = LightEvent()
        writable.set()
        self.writable = writable  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        """As uvicorn's; then forget the handshake request (the scope has what the application needs)."""
        super().handle_connect(event)
        self.request = None  # uvicorn keeps it and never reads it again
        # websockets' parser generator still holds the request in a local for the connection's life: its
        # headers (~2.5 kB) are emptied instead. The scope got its own copy and accept() has read them.
        event.headers.clear()

    async def send(self, message: Any) -> None:
        """As uvicorn's; once the handshake response is out, forget it too."""
        await super().send(message)
        if message.get("type") == "websocket.accept":
            self.response = None  # type: ignore[assignment]  # read only to send the accept

    async def run_asgi(self) -> None:
        """As uvicorn's, once the scope has the extension."""
        extensions = cast(dict[str, Any], self.scope["extensions"])
        extensions[EXTENSION] = write_buffer_extension(lambda: transport_pending_bytes(self.transport))
        await super().run_asgi()
