"""What application code may do with a connection: the small, typed facade handlers and hooks are given.

``SendContext.connection``, ``SubscribeContext.connection`` and the first argument of ``on_unsubscribe``
hooks are a ``ConnectionHandle``, never the connection itself: a handler can read who is connected, ask
about a subscription, message this session, and re-authenticate it, but not reach the queue, the
transport or the session core. One handle per connection, so it can key a ``WeakKeyDictionary``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stompengine.broker import Broker
    from stompengine.connection.lifecycle import StompConnection


class ConnectionHandle:
    """A STOMP connection as application code sees it."""

    __slots__ = ("__weakref__", "_connection")

    def __init__(self, connection: StompConnection) -> None:
        self._connection = connection

    @property
    def user(self) -> Any:
        """The authenticated user (None before CONNECT succeeded)."""
        return self._connection.user

    @property
    def user_id(self) -> Any:
        """The principal's user id (None before CONNECT succeeded)."""
        principal = self._connection.principal
        return None if principal is None else principal.user_id

    @property
    def session_id(self) -> str:
        """The STOMP session id (CONNECTED's ``session`` header)."""
        return self._connection.session_id

    @property
    def broker(self) -> Broker:
        """The broker this connection publishes to and subscribes through."""
        return self._connection.broker

    def is_subscribed(self, subscription_id: str, destination: str) -> bool:
        """Whether subscription ``subscription_id`` of this session is live and to ``destination``."""
        return self._connection.is_subscribed(subscription_id, destination)

    def notify(self, destination: str, body: Any) -> bool:
        """A MESSAGE to this session's own subscriptions to ``destination`` only; False when it has none."""
        return self._connection.notify(destination, body)

    async def reauthenticate(self, headers: Mapping[str, str]) -> None:
        """Check fresh credentials with the configured authenticator (same user only: else ``Denied``) and
        move the connection's expiry to theirs."""
        await self._connection.reauthenticate(headers)

    def __repr__(self) -> str:
        return f"<ConnectionHandle {self.session_id}>"
