"""Announcing what the chat writer committed: room topics, DM queues, notification streams.

Called on the event loop by ``chat.writer`` after a batch's transaction committed and before its
callers are answered, so a subscriber never sees a message that is not in the database, and a
RECEIPT never precedes the broadcast it stands for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from chat.destinations import DM_QUEUE, room_topic
from chat.writer.events import MessageChanged, MessageRepeated, MessageStored, NotificationsCreated, WriteEvent
from stompengine import broker

logger = logging.getLogger(__name__)

_background: set[asyncio.Task[Any]] = set()


def event_headers(event: str, seq: int) -> tuple[tuple[str, str], ...]:
    """The headers of a room event's MESSAGE (live and replayed alike); no ``event-seq`` without a number."""
    return (("event", event), ("event-seq", str(seq))) if seq else (("event", event),)


def write_events_publish(events: Sequence[WriteEvent]) -> None:
    """Publish a committed batch (on the event loop's thread).

    Everything on a room topic carries its room event number as ``seq`` (and the number before it as
    ``prev``): every process delivers a room's events in that order (stompengine/broker/sequencer.py), and
    clients see it in the ``event-seq`` header next to ``event`` (message, edit, delete, reaction). A
    repeated client_id is re-announced under its original number (subscribers dedupe by id): it repairs a
    broadcast lost when a worker died between commit and publish. Notifications go to the streams in a
    background task: they are stored, and a stream that misses one replays it, so the RECEIPTs of the
    batch do not wait for Redis round trips.
    """
    streams: list = []
    for event in events:
        if isinstance(event, MessageStored | MessageRepeated):
            seq = event.event_seq
            headers = event_headers("message", seq)
            broker.publish(room_topic(event.room_slug), event.message, headers=headers, seq=seq, prev=max(seq - 1, 0))
            if isinstance(event, MessageStored):
                for user_id in event.direct_recipient_ids:  # the other member's sessions, on /user/queue/dm
                    broker.publish_to_user(user_id, DM_QUEUE, event.message)
        elif isinstance(event, MessageChanged):
            headers = event_headers(event.event, event.event_seq)
            broker.publish(room_topic(event.room_slug), event.body, headers=headers, seq=event.event_seq,
                           prev=event.event_seq - 1)  # fmt: skip
        elif isinstance(event, NotificationsCreated):
            streams.extend(event.events)
    if streams:
        from notifications.publishing import events_publish_async

        task = asyncio.get_running_loop().create_task(events_publish_async(streams))
        _background.add(task)
        task.add_done_callback(_background.discard)


async def write_events_published(events: Sequence[WriteEvent]) -> None:
    """Publish from a loop that is about to end (a sync caller's temporary loop): wait for Redis too."""
    write_events_publish(events)
    pending = list(_background)
    if pending:
        await asyncio.wait(pending, timeout=5.0)
    bridge = broker.get_broker().bridge
    if bridge is not None:
        try:
            async with asyncio.timeout(5.0):
                await bridge.flush()
        except TimeoutError:
            logger.warning("Redis did not take a published chat message within 5 s; it may be lost")
