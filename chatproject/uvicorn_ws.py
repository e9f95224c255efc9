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

The protocol object itself: CPython 3.11 keeps an instance's attributes in a compact array shared-keyed by
its class (~300 bytes) for up to 29 names, and turns the whole ``__dict__`` into an ordinary dict past
that (~1.6 kB). uvicorn's ``__init__`` sets 34. ``SansIOProtocol.__init__`` sets only what differs per
connection; what is the same for every connection of a server (the app, the root path, the ping
settings, the logger) is read from the config through properties or is a class attribute.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.server import ServerProtocol

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


def _read_through(holder: str, name: str) -> Any:
    """A read-only property for ``self.<holder>.<name>`` (a per-server value uvicorn copies per instance)."""
    return property(lambda self: getattr(getattr(self, holder), name))


#: What CPython 3.11 keeps in an instance's compact, class-shared attribute array (its SHARED_KEYS_MAX_SIZE
#: is 30, one of which it never fills): past this many attribute names the ``__dict__`` becomes a 1.6 kB dict.
COMPACT_ATTRIBUTES = 29


class SansIOProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, with the write-buffer extension in the scope, light queues, and a
    compact instance (see the module docstring)."""

    # The same for every connection of a server: uvicorn sets them per instance.
    logger = logging.getLogger("uvicorn.error")
    close_timeout = 10.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # As uvicorn's __init__ (websockets_sansio_impl.py), without calling it: it sets every attribute on the
        # instance. tests/security/test_server_adapters.py checks that each one it sets is here too.
        if not config.loaded:
            config.load()
        # Every attribute the instance will ever have is set here, even those first used later (the ping's,
        # the close's): CPython lets a class's shared keys grow only while few instances exist (each new one
        # takes a slot of the reserve), so a name first set on the thousandth connection's first ping would
        # turn that instance's attributes into an ordinary dict after all.
        self.config = config
        self.loop = _loop or asyncio.get_event_loop()
        self.app_state = app_state
        self.server_state = server_state
        self.transport = None  # type: ignore[assignment]  # as uvicorn's: set by connection_made
        self.server = None
        self.client = None
        self.scheme = None  # type: ignore[assignment]
        self.request = None  # type: ignore[assignment]  # uvicorn keeps the handshake request; dropped at once
        self.response = None  # type: ignore[assignment]  # set by the handshake, dropped after the accept
        self.scope = None  # type: ignore[assignment]  # set by the handshake, dropped after the accept
        self.queue = LightQueue()  # type: ignore[assignment]  # the subset of asyncio.Queue uvicorn uses
        self.handshake_initiated = False
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.close_timer = None
        self.initial_response = None
        writable = LightEvent()
        writable.set()
        self.writable = writable  # type: ignore[assignment]
        self.read_paused = False
        self.ping_timer = None
        self.pong_timer = None
        self.pending_ping_payload = None
        self.ping_sent_at = 0.0
        self.last_ping_rtt = 0.0
        self.curr_msg_data_type = "bytes"
        extensions = []
        if config.ws_per_message_deflate:
            extensions = [
                ServerPerMessageDeflateFactory(
                    server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
                )
            ]
        self.conn = ServerProtocol(extensions=extensions, max_size=config.ws_max_size, logger=self.logger)
        self.frames: list[bytes] = []

    # What uvicorn's __init__ copies from the config and the server state into every instance.
    app = _read_through("config", "loaded_app")
    root_path = _read_through("config", "root_path")
    asgi_version = _read_through("config", "asgi_version")
    ping_interval = _read_through("config", "ws_ping_interval")
    ping_timeout = _read_through("config", "ws_ping_timeout")
    connections = _read_through("server_state", "connections")
    tasks = _read_through("server_state", "tasks")
    default_headers = _read_through("server_state", "default_headers")

    def handle_connect(self, event: Any) -> None:
        """As uvicorn's, plus the write-buffer extension; then forget the handshake request."""
        super().handle_connect(event)
        scope: Any = self.scope
        if scope is not None:  # the handshake was accepted by websockets: the application task is scheduled
            scope["extensions"][EXTENSION] = write_buffer_extension(lambda: transport_pending_bytes(self.transport))
        self.request = None  # type: ignore[assignment]  # uvicorn keeps it and never reads it again
        # websockets' parser generator still holds the request in a local for the connection's life: its
        # headers (~2.5 kB) are emptied instead. The scope got its own copy and accept() has read them.
        event.headers.clear()

    async def send(self, message: Any) -> None:
        """As uvicorn's; once the handshake response is out, forget it and the scope too."""
        await super().send(message)
        if message.get("type") == "websocket.accept" and self.handshake_complete:
            # Read only to send the accept (and to log it): the application has its own reference to the
            # scope, and without this one the headers it drops after the accept are freed. (Not when the
            # peer left first: uvicorn still logs a later close with the scope.)
            self.response = None  # type: ignore[assignment]
            self.scope = None  # type: ignore[assignment]
