"""The live STOMP connections of this process, for the operations view and for closing them on demand.

The tracker only holds references and counters; everything it reports is read when asked, so keeping
it costs nothing on the delivery path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stompengine.connection import StompConnection

from stompengine import metrics, signals

logger = logging.getLogger(__name__)


def transport_name(connection: StompConnection) -> str:
    """``websocket`` for the raw endpoint, else the SockJS transport (xhr-streaming, xhr-polling, …)."""
    transport = getattr(connection, "_transport", None)
    session = getattr(transport, "_session", None)
    if session is not None:
        return f"sockjs/{getattr(session, 'transport', None) or 'unknown'}"
    return "websocket"


class ConnectionTracker:
    """Authenticated connections of this process, by session id."""

    def __init__(self) -> None:
        self.connections: dict[str, StompConnection] = {}
        self._gauges: dict[str, Any] = {}  # session id -> its open-connections gauge child (by transport)
        self.slow_consumer_disconnects = 0

    def add(self, connection: StompConnection) -> None:
        self.connections[connection.session_id] = connection
        gauge = self._gauges[connection.session_id] = metrics.CONNECTIONS_OPEN.labels(transport_name(connection))
        gauge.inc()
        metrics.connect_outcome("accepted")
        # The project starts what it needs per process on the first one (the operations listener).
        signals.connection_opened.send(sender=ConnectionTracker, connection=connection)

    def discard(self, connection: StompConnection) -> None:
        self.connections.pop(connection.session_id, None)
        gauge = self._gauges.pop(connection.session_id, None)
        if gauge is not None:
            gauge.dec()

    def snapshot(self) -> list[dict[str, Any]]:
        """One row per connection: user, transport, subscriptions, send-queue depth."""
        rows = []
        for connection in list(self.connections.values()):
            user = connection.user
            rows.append(
                {
                    "session": connection.session_id,
                    "user": user.get_username() if user is not None else None,
                    "user_id": getattr(user, "pk", None),
                    "transport": transport_name(connection),
                    "version": connection.version,
                    "destinations": sorted(connection.subscribed_destinations()),
                    "queue_depth": connection.queue_depth,
                }
            )
        return rows

    def matching(self, predicate: Callable[[StompConnection], bool]) -> list[StompConnection]:
        return [c for c in list(self.connections.values()) if predicate(c)]


# Process-wide on purpose, unlike the runtime's parts: the admin's report runs in a sync view's temporary
# event loop and must still see the connections of the server's loop (chat/ops.py worker_report).
tracker = ConnectionTracker()
