"""A STOMP 1.0-1.2 server for Django Channels: codec, session core, broker, connection, SockJS adapter.

This package imports nothing from the project's apps; the project plugs in its authenticator, its
application destinations and its subscription guards. Add ``"stompengine"`` to ``INSTALLED_APPS`` and
register handlers in an app's ``stomp_destinations`` module::

    from stompengine import Denied, SendContext, SubscribeContext, app_destination, subscription_guard

The names below are loaded on first use, so importing a submodule (the sans-IO ``stompengine.stomp``,
``stompengine.conf``) does not load Django, Channels or the connection.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stompengine.realtime.registry import (
        Completion,
        Denied,
        Prepared,
        Rejected,
        Replay,
        SendContext,
        SubscribeContext,
        app_destination,
        app_prepare,
        on_subscribe,
        on_unsubscribe,
        sequence_repair,
        subscription_guard,
        subscription_replay,
    )

__all__ = [
    "Completion",
    "Denied",
    "Prepared",
    "Rejected",
    "Replay",
    "SendContext",
    "SubscribeContext",
    "app_destination",
    "app_prepare",
    "on_subscribe",
    "on_unsubscribe",
    "sequence_repair",
    "subscription_guard",
    "subscription_replay",
]
_REGISTRY_NAMES = frozenset(__all__)


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_NAMES:
        return getattr(importlib.import_module("stompengine.realtime.registry"), name)
    raise AttributeError(f"module 'stompengine' has no attribute {name!r}")
