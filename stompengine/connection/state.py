"""The state every part of a connection shares, declared once (``StompConnection`` in lifecycle.py fills it).

The connection is one object assembled from mixins (frame dispatch, SEND routing, subscriptions); this
base names the attributes and the few methods they call on each other, so each mixin type-checks alone.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stompengine.auth import Principal
    from stompengine.broker import Broker
    from stompengine.connection.clock import Clock
    from stompengine.connection.config import StompConfig
    from stompengine.connection.handle import ConnectionHandle
    from stompengine.connection.keepalive import Keepalive
    from stompengine.connection.outbound import Outbound, Transport
    from stompengine.realtime.limits import SendGate
    from stompengine.realtime.registry import DestinationRegistry
    from stompengine.stomp.session import ServerSession, Subscription

CLOSE_NORMAL = 1000
# After an ERROR frame too: the frame says what went wrong, and servers differ in which other codes an
# application may send (autobahn, under daphne, refuses 1008; SockJS allows only 1000 and 3000-4999).
CLOSE_AFTER_ERROR = 1000
ERRORS_DESTINATION = "/user/queue/errors"


class ConnectionBase:
    """Attributes and cross-calls shared by the parts of ``StompConnection``."""

    config: StompConfig
    scope: dict[str, Any]
    user: Any
    principal: Principal | None
    session_id: str
    handle: ConnectionHandle
    _transport: Transport
    _core: ServerSession
    _broker: Broker | None
    _registry: DestinationRegistry
    _out: Outbound
    _keepalive: Keepalive
    _clock: Clock
    _loop: asyncio.AbstractEventLoop
    _send_gate: SendGate

    @property
    def broker(self) -> Broker:
        """The broker of this connection's event loop."""
        raise NotImplementedError

    def fail(self, message: str, detail: str = "", *, code: str | None = None, receipt_id: str | None = None) -> None:
        """Send an ERROR frame and close."""
        raise NotImplementedError

    def _flush_core(self) -> None:
        raise NotImplementedError

    def _queue_output(self, data: bytes) -> None:
        raise NotImplementedError

    def _detach(self, subscriptions: tuple[Subscription, ...]) -> None:
        raise NotImplementedError

    def notify(self, destination: str, body: Any) -> bool:
        """A MESSAGE to this session's own subscriptions to ``destination``."""
        raise NotImplementedError

    def _checked(self, destination: str, verb: str) -> str:
        raise NotImplementedError
