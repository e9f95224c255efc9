"""After-commit listeners that announce stored chat data over STOMP (room topics, DM queues).

Registered in ChatConfig.ready(); the services call them only after their transaction committed, so
a subscriber never sees a message that is not in the database.
"""

from __future__ import annotations

import logging

from chat import broker
from chat.api.serializers import message_json
from chat.destinations import DM_QUEUE, room_topic
from chat.models import Membership, Message
from chat.selectors import message_previous_id

logger = logging.getLogger(__name__)


def broadcast_message(message: Message) -> None:
    """Every subscriber of the room's topic, on every process, in id order (each process publishes its own
    messages after its commit, so without the sequence two processes could reach Redis the other way round)."""
    previous = message_previous_id(message=message)
    broker.publish_sync(room_topic(message.room.slug), message_json(message), seq=message.pk, prev=previous)


def notify_direct_message(message: Message) -> None:
    """A new direct message also reaches the other member's sessions on /user/queue/dm."""
    if not message.room.is_direct:
        return
    payload = message_json(message)
    for user_id in (
        Membership.objects.filter(room=message.room).exclude(user=message.author).values_list("user_id", flat=True)
    ):
        broker.publish_sync(DM_QUEUE, payload, user_id=user_id)


def register() -> None:
    from chat import services

    for listener in (broadcast_message, notify_direct_message):
        if listener not in services.message_created_listeners:
            services.message_created_listeners.append(listener)
    if broadcast_message not in services.message_repeated_listeners:
        services.message_repeated_listeners.append(broadcast_message)
