"""The STOMP broker: where server code publishes and where connections subscribe.

From async code in this process::

    from stompengine import broker
    broker.publish("/topic/rooms.lobby", {"id": 1, "body": "hi"})           # JSON body
    broker.publish_to_user(user.pk, "/queue/notifications", "you have mail")  # every session of that user

From sync code (a view, a service), after the transaction commits::

    broker.publish_on_commit("/topic/rooms.lobby", payload)

``publish`` and ``publish_to_user`` are plain (non-async) calls: local delivery only appends to bounded
per-connection queues and the Redis hand-off is queued, so they may be called from async code and from
the event loop's thread alike. From another thread (sync views run in one) use ``publish_sync`` or
``publish_on_commit``, which hop to the event loop of the server.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from stompengine.broker.broker import Body, Broker, HeaderItems
from stompengine.broker.destinations import DestinationPolicy, InvalidDestination
from stompengine.broker.local import Publication

logger = logging.getLogger(__name__)

__all__ = [
    "Broker",
    "DestinationPolicy",
    "InvalidDestination",
    "Publication",
    "get_broker",
    "publish",
    "publish_on_commit",
    "publish_sync",
    "publish_to_user",
]


def get_broker() -> Broker:
    """The broker of the running event loop's runtime (``stompengine.runtime.current()``)."""
    from stompengine import runtime

    return runtime.current().broker


def publish(
    destination: str,
    body: Body,
    *,
    headers: HeaderItems = (),
    content_type: str | None = None,
    seq: int = 0,
    prev: int = 0,
) -> Publication:
    """Publish to a destination from the event loop's thread (``seq``/``prev``: see ``Broker.publish``)."""
    return get_broker().publish(destination, body, headers=headers, content_type=content_type, seq=seq, prev=prev)


def publish_to_user(
    user_id: object, destination: str, body: Body, *, headers: HeaderItems = (), content_type: str | None = None
) -> Publication:
    """Publish to a user destination (``/user/queue/...``) of every session of ``user_id``."""
    return get_broker().publish_to_user(user_id, destination, body, headers=headers, content_type=content_type)


def publish_sync(destination: str, body: Body, *, user_id: Any = None, **kwargs: Any) -> None:
    """Publish from sync code running in a worker thread of the server (or with no event loop at all)."""
    from asgiref.sync import async_to_sync

    async def run() -> None:
        # In a server, async_to_sync runs this on the server's loop, whose broker has the subscribers.
        # Elsewhere (a management command, a shell) the loop is a temporary one: its broker only
        # reaches other processes through Redis, so wait for the hand-off and close it again.
        from stompengine import runtime

        temporary = runtime.existing() is None
        if user_id is None:
            publish(destination, body, **kwargs)
        else:
            publish_to_user(user_id, destination, body, **kwargs)
        if temporary:
            await runtime.uninstall()  # waits (bounded) for Redis to take the message first

    async_to_sync(run)()


def publish_on_commit(destination: str, body: Body, **kwargs: Any) -> None:
    """Publish once the current database transaction commits (immediately outside a transaction)."""
    from django.db import transaction

    transaction.on_commit(functools.partial(publish_sync, destination, body, **kwargs), robust=True)
