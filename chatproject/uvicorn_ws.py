"""uvicorn WebSocket protocols with write backpressure: ``uvicorn --ws chatproject.uvicorn_ws:SansIOProtocol``.

Same as uvicorn's ``websockets-sansio`` implementation (the one the project runs; uvicorn deprecates the
legacy ``websockets`` one), plus ``scope["extensions"]["chat.write_buffer"]["pending_bytes"]``: the asyncio
transport's ``get_write_buffer_size()`` (stompengine/realtime/backpressure.py). Without it uvicorn still pauses
``send`` above the transport's high-water mark, so the backlog stays in the STOMP connection's own queue,
which is bounded either way; with it the count is exact.
"""

from __future__ import annotations

from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from stompengine.realtime.backpressure import EXTENSION, write_buffer_extension


def transport_pending_bytes(transport: Any) -> int:
    """Bytes in an asyncio transport's write buffer (0 once it is closing or gone)."""
    if transport is None or transport.is_closing():
        return 0
    return transport.get_write_buffer_size()


class SansIOProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, with the write-buffer extension in the scope."""

    async def run_asgi(self) -> None:
        """As uvicorn's, once the scope has the extension."""
        extensions = cast(dict[str, Any], self.scope["extensions"])
        extensions[EXTENSION] = write_buffer_extension(lambda: transport_pending_bytes(self.transport))
        await super().run_asgi()
