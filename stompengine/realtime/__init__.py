"""The registry of application destinations and subscription guards, limits, backpressure, the SockJS adapter.

The connection itself lives in ``stompengine.connection``; handler modules import the registry's names from
``stompengine`` (``from stompengine import app_destination, SendContext, ...``).
"""

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


def __getattr__(name: str) -> object:
    """``StompConfig``, ``StompConnection``, ``Transport``: they live in ``stompengine.connection`` now, which
    imports from this package (limits, registry), so they are looked up on first use, not at import."""
    if name in ("StompConfig", "StompConnection", "Transport"):
        import stompengine.connection

        return getattr(stompengine.connection, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
