"""One ``dispatch`` for Channels consumers that must not hop to a thread for every message they receive.

Channels' ``AsyncConsumer.dispatch`` awaits ``aclose_old_connections()`` (a ``sync_to_async`` hop to a
worker thread) before every handler, which costs about half the throughput of small WebSocket frames
and SockJS requests. The consumers that mix this in touch the database only inside
``database_sync_to_async`` calls, which close stale connections themselves before and after. The
upstream behaviour this relies on is pinned by ``tests/stomp/test_dispatch.py``.
"""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name


class DirectDispatchMixin:
    """Put first in the bases of an ``AsyncConsumer`` subclass: handlers are awaited with no thread hop."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Call the handler for the message type (``websocket.receive`` -> ``websocket_receive``)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']!r}")
        await handler(message)
