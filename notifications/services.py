"""Notification writes: create (one or in bulk), mark read, and the chat listeners that create them.

Every creation commits first and publishes on commit (``transaction.on_commit``), so a stream never
shows a notification that is not stored, and Last-Event-ID replay can always find what was sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models.functions import Lower

from notifications.models import Notification
from notifications.publishing import StreamEvent, event_data, events_publish

if TYPE_CHECKING:
    from chat.models import Membership, Message, Room

logger = logging.getLogger(__name__)
User = get_user_model()

BULK_BATCH_SIZE = 1000  # rows per INSERT of a bulk creation
EXCERPT_LENGTH = 200
MENTION_LIMIT = 20  # distinct @names honoured per message: a message cannot page the whole server
ANNOUNCEMENT_MAX_LENGTH = 2000
# "@name" not preceded by a word character or "@" (so e-mail addresses do not count); Django usernames
# may hold letters, digits and @ . + - _; a trailing "." or "-" is sentence punctuation, not the name.
_MENTION = re.compile(r"(?<![\w@])@([\w.+-]*[\w+])", re.UNICODE)


class NotificationError(ValueError):
    """A notification request that cannot be carried out (bad kind, empty announcement, ...)."""


def _event(notification: Notification) -> StreamEvent:
    return StreamEvent(
        recipient_id=notification.recipient_id,
        id=notification.pk,
        kind=notification.kind,
        data=event_data(
            id=notification.pk,
            kind=notification.kind,
            payload=notification.payload,
            created=notification.created,
            read=notification.read,
        ),
    )


def _publish_on_commit(notifications: list[Notification]) -> None:
    events = [_event(n) for n in notifications]
    transaction.on_commit(lambda: events_publish(events), robust=True)


def _check_kind(kind: str) -> str:
    if kind not in Notification.Kind.values:
        raise NotificationError(f"unknown notification kind {kind!r}; use one of {Notification.Kind.values}")
    return kind


def _lock_recipients(user_ids: list[int]) -> None:
    """Lock the recipients' rows (in id order, so two writers never deadlock) before inserting.

    A recipient's notifications then take their ids and commit in the same order, so replay after
    Last-Event-ID cannot miss a slower transaction that commits a lower id later (PostgreSQL; SQLite
    serialises writers anyway, and ignores FOR UPDATE).
    """
    if user_ids and connection.features.has_select_for_update:
        list(get_user_model().objects.select_for_update().filter(pk__in=user_ids).order_by("pk").values_list("pk"))


def notification_create(*, recipient: AbstractBaseUser, kind: str, payload: dict[str, Any]) -> Notification:
    """Store one notification for ``recipient`` and publish it to their streams after commit."""
    _check_kind(kind)
    with transaction.atomic():
        _lock_recipients([recipient.pk])
        notification = Notification.objects.create(recipient_id=recipient.pk, kind=kind, payload=payload)
        _publish_on_commit([notification])
    return notification


def notifications_create_bulk(*, recipient_ids: Iterable[int], kind: str, payload: dict[str, Any]) -> int:
    """Store the same notification for many recipients (batched INSERTs) and publish after commit.

    Returns how many were created. One transaction: either every recipient gets it or none does.
    """
    _check_kind(kind)
    created: list[Notification] = []
    recipient_ids = list(recipient_ids)
    with transaction.atomic():
        _lock_recipients(recipient_ids)
        batch: list[Notification] = []
        for recipient_id in recipient_ids:
            batch.append(Notification(recipient_id=recipient_id, kind=kind, payload=payload))
            if len(batch) >= BULK_BATCH_SIZE:
                created.extend(Notification.objects.bulk_create(batch))
                batch = []
        if batch:
            created.extend(Notification.objects.bulk_create(batch))
        if created and created[0].pk is None:  # a backend that cannot return ids from bulk INSERT
            raise NotificationError("this database cannot return ids from a bulk insert")
        _publish_on_commit(created)
    logger.info("created %d %s notifications", len(created), kind)
    return len(created)


def _announcement_payload(*, text: str, title: str, author: AbstractBaseUser | None) -> dict[str, Any]:
    text, title = text.strip(), title.strip()
    if not text:
        raise NotificationError("an announcement needs some text")
    if len(text) > ANNOUNCEMENT_MAX_LENGTH:
        raise NotificationError(f"an announcement is at most {ANNOUNCEMENT_MAX_LENGTH} characters")
    return {"title": title[:200], "text": text, "by": author.get_username() if author else None}


def announcement_create_for_all(*, text: str, title: str = "", author: AbstractBaseUser | None = None) -> int:
    """Announce to every active user; returns the number of notifications created."""
    payload = _announcement_payload(text=text, title=title, author=author)
    recipient_ids = User.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True)
    return notifications_create_bulk(
        recipient_ids=recipient_ids.iterator(chunk_size=BULK_BATCH_SIZE),
        kind=Notification.Kind.ANNOUNCEMENT,
        payload=payload,
    )


def announcement_create_for_room(
    *, room: Room, text: str, title: str = "", author: AbstractBaseUser | None = None
) -> int:
    """Announce to the active members of one room; returns the number of notifications created."""
    payload = {**_announcement_payload(text=text, title=title, author=author), "room": room.slug,
               "room_name": room.name}  # fmt: skip
    recipient_ids = room.memberships.filter(user__is_active=True).order_by("user_id").values_list("user_id", flat=True)
    return notifications_create_bulk(
        recipient_ids=recipient_ids.iterator(chunk_size=BULK_BATCH_SIZE),
        kind=Notification.Kind.ANNOUNCEMENT,
        payload=payload,
    )


def notification_mark_read(*, notification: Notification) -> Notification:
    if not notification.read:
        Notification.objects.filter(pk=notification.pk).update(read=True)
        notification.read = True
    return notification


def notifications_mark_all_read(*, user: AbstractBaseUser, up_to: int | None = None) -> int:
    """Mark the user's unread notifications read (only ids <= ``up_to`` when given); returns the count."""
    unread = Notification.objects.filter(recipient_id=user.pk, read=False)
    if up_to is not None:
        unread = unread.filter(id__lte=up_to)
    return unread.update(read=True)


# --- Created by chat events (registered in NotificationsConfig.ready) ------------------------------------


def mentioned_names(body: str) -> list[str]:
    """The distinct ``@names`` of a message body, in order, at most MENTION_LIMIT (case preserved)."""
    names: dict[str, str] = {}
    for match in _MENTION.finditer(body):
        names.setdefault(match.group(1).lower(), match.group(1))
        if len(names) >= MENTION_LIMIT:
            break
    return list(names.values())


def _excerpt(body: str) -> str:
    body = " ".join(body.split())
    return body if len(body) <= EXCERPT_LENGTH else body[: EXCERPT_LENGTH - 1] + "…"


def _message_payload(message: Message) -> dict[str, Any]:
    room = message.room
    return {
        "room": room.slug,
        "room_name": room.name,
        "message_id": message.pk,
        "author": message.author.get_username(),
        "excerpt": _excerpt(message.body),
    }


def notifications_for_message(*, message: Message) -> list[Notification]:
    """Mentions (users who can see the room, never the author) and the direct-message notification."""
    from chat.models import Membership

    room = message.room
    payload = _message_payload(message)
    recipients: dict[int, str] = {}
    if room.is_direct:
        # The other member is told about every message; a mention in a DM would only repeat that.
        # Never an inactive user: a deactivated account must not be told anything.
        others = Membership.objects.filter(room=room, user__is_active=True).exclude(user_id=message.author_id)
        for user_id in others.values_list("user_id", flat=True):
            recipients[user_id] = Notification.Kind.DIRECT_MESSAGE
    else:
        names = [name.lower() for name in mentioned_names(message.body)]
        if names:
            users = User.objects.annotate(name_lower=Lower("username")).filter(name_lower__in=names, is_active=True)
            users = users.exclude(pk=message.author_id)
            if room.is_private:
                users = users.filter(memberships__room=room)
            for user_id in users.values_list("pk", flat=True):
                recipients[user_id] = Notification.Kind.MENTION
    if not recipients:
        return []
    with transaction.atomic():
        created = Notification.objects.bulk_create(
            [Notification(recipient_id=uid, kind=kind, payload=payload) for uid, kind in recipients.items()]
        )
        _publish_on_commit(created)
    return created


def notification_for_member_added(*, membership: Membership, actor: AbstractBaseUser | None) -> Notification | None:
    """Tell a user they were added to a private room by someone else."""
    room = membership.room
    if not room.is_private or room.is_direct or (actor is not None and actor.pk == membership.user_id):
        return None
    if not membership.user.is_active:
        return None
    payload = {"room": room.slug, "room_name": room.name, "by": actor.get_username() if actor else None}
    return notification_create(recipient=membership.user, kind=Notification.Kind.ROOM_INVITE, payload=payload)


def on_message_created(message: Message) -> None:
    """chat.services.message_created_listeners hook (called after the message committed)."""
    notifications_for_message(message=message)


def on_member_added(membership: Membership, actor: AbstractBaseUser | None) -> None:
    """chat.services.member_added_listeners hook (called after the membership committed)."""
    notification_for_member_added(membership=membership, actor=actor)
