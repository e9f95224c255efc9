"""Carrying stored notifications to open streams through the channel layer (called after commit only).

One group per recipient (``group_name``); the message carries everything the stream writes, so a live
delivery needs no database query. The layer is ``settings.NOTIFICATIONS_CHANNEL_LAYER``: in-memory in
single-process development, Redis when ``REDIS_URL`` is set, so a notification created by any process
reaches a stream held by any other.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

logger = logging.getLogger(__name__)

EVENT_TYPE = "notification.event"  # dispatched to the stream consumer's notification_event()
# "These notifications were read" (on any page or through the API): the stream writes it as ``event: read``
# without an id (it is not a notification, so Last-Event-ID must not move), and every open bell follows.
READ_EVENT_TYPE = "notification.read"
READ_EVENT = "read"
# Group sends in flight at once for a bulk publish: enough to overlap round trips to Redis without
# flooding its connection pool.
PUBLISH_CONCURRENCY = 64
_JSON = DjangoJSONEncoder()


def group_name(user_id: int) -> str:
    """The one channel-layer group name of a recipient's streams."""
    return f"notifications.user.{int(user_id)}"


def channel_layer() -> BaseChannelLayer | None:
    return get_channel_layer(settings.NOTIFICATIONS_CHANNEL_LAYER)


def notification_fields(*, id: int, kind: str, payload: Any, created: datetime, read: bool) -> dict[str, Any]:
    """A notification as JSON-ready fields: the stream's ``data:`` and the REST API show exactly these."""
    return {"id": id, "kind": kind, "payload": payload, "created": _JSON.default(created), "read": read}


def event_data(*, id: int, kind: str, payload: Any, created: datetime, read: bool) -> str:
    """The JSON text of a notification (compact: never a raw line break, UTF-8 left as is)."""
    fields = notification_fields(id=id, kind=kind, payload=payload, created=created, read=read)
    return json.dumps(fields, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class StreamEvent:
    """What travels over the layer: the notification id, its SSE event name and its JSON data."""

    recipient_id: int
    id: int
    kind: str
    data: str

    def message(self) -> dict[str, Any]:
        return {"type": EVENT_TYPE, "id": self.id, "kind": self.kind, "data": self.data}


async def events_publish_async(events: Sequence[StreamEvent]) -> None:
    """Send each event to its recipient's group, a bounded number at a time; failures are logged."""
    layer = channel_layer()
    if layer is None or not events:
        return
    semaphore = asyncio.Semaphore(PUBLISH_CONCURRENCY)

    async def send(event: StreamEvent) -> None:
        async with semaphore:
            try:
                await layer.group_send(group_name(event.recipient_id), event.message())
            except Exception:
                # Stored already: a client that missed it gets it on its next replay.
                logger.exception("could not publish notification %s to its stream group", event.id)

    if len(events) == 1:
        await send(events[0])
    else:
        await asyncio.gather(*(send(event) for event in events))


def events_publish(events: Iterable[StreamEvent]) -> None:
    """Blocking wrapper for ``transaction.on_commit`` callbacks (runs on the server's loop when there is one)."""
    batch = list(events)
    if batch:
        async_to_sync(events_publish_async)(batch)


def read_event_data(*, scope: str, unread: int, **fields: Any) -> str:
    """The JSON text of a read event: what was read (``scope`` one, room or all, with its fields) and the
    user's unread count after it."""
    return json.dumps({"scope": scope, **fields, "unread": unread}, ensure_ascii=False, separators=(",", ":"))


def read_event_publish(*, user_id: int, data: str) -> None:
    """Blocking (an on-commit callback): send a read event to the user's open streams; failures are logged.

    Nothing is stored for it: a page that misses one reads the unread count when it (re)connects.
    """
    layer = channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(user_id), {"type": READ_EVENT_TYPE, "data": data})
    except Exception:
        logger.exception("could not publish a read event to the streams of user %s", user_id)
