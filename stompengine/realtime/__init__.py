"""The transport-agnostic STOMP connection and the registry of application destinations and guards.

``StompConnection`` ties the sans-IO session core (``stompengine.stomp``) to authentication, the broker
(``stompengine.broker``) and the ``/app`` handlers and subscription guards registered here.
"""

from stompengine.realtime.connection import StompConfig, StompConnection, Transport
from stompengine.realtime.registry import (
    Completion,
    Denied,
    DestinationRegistry,
    Prepared,
    Rejected,
    Replay,
    SendContext,
    SubscribeContext,
    app_destination,
    app_prepare,
    destinations,
    on_subscribe,
    on_unsubscribe,
    subscription_guard,
    subscription_replay,
)

__all__ = [
    "Completion",
    "Denied",
    "DestinationRegistry",
    "Prepared",
    "Rejected",
    "Replay",
    "SendContext",
    "StompConfig",
    "StompConnection",
    "SubscribeContext",
    "Transport",
    "app_destination",
    "app_prepare",
    "destinations",
    "on_subscribe",
    "on_unsubscribe",
    "subscription_guard",
    "subscription_replay",
]
