"""Notification writes: create (one or in bulk), mark read, the rows chat messages cause, and the listeners.

Every creation commits first and publishes on commit (``transaction.on_commit``), so a stream never
shows a notification that is not stored, and Last-Event-ID replay can always find what was sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models.functions import Lower

from notifications.models import Notification
from notifications.publishing import StreamEvent, event_data, events_publish, read_event_data, read_event_publish
from operations import metrics

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
    metrics.NOTIFICATIONS.inc(len(events))
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


# What opening a room settles: the notifications that only point at that room's messages.
ROOM_KINDS = (Notification.Kind.MENTION, Notification.Kind.DIRECT_MESSAGE)


def _read_publish_on_commit(*, user_id: int, scope: str, **fields: Any) -> None:
    """Tell the user's open pages (their streams) what was read, once it is committed, with the new count."""

    def publish() -> None:
        unread = Notification.objects.filter(recipient_id=user_id, read=False).count()
        read_event_publish(user_id=user_id, data=read_event_data(scope=scope, unread=unread, **fields))

    transaction.on_commit(publish, robust=True)


def notification_mark_read(*, notification: Notification) -> Notification:
    if not notification.read:
        with transaction.atomic():
            changed = Notification.objects.filter(pk=notification.pk, read=False).update(read=True)
            if changed:
                _read_publish_on_commit(user_id=notification.recipient_id, scope="one", id=notification.pk)
        notification.read = True
    return notification


def notifications_mark_all_read(*, user: AbstractBaseUser, up_to: int | None = None) -> int:
    """Mark the user's unread notifications read (only ids <= ``up_to`` when given); returns the count."""
    unread = Notification.objects.filter(recipient_id=user.pk, read=False)
    if up_to is not None:
        unread = unread.filter(id__lte=up_to)
    with transaction.atomic():
        updated = unread.update(read=True)
        if updated:
            _read_publish_on_commit(user_id=user.pk, scope="all", up_to=up_to)
    return updated


def notifications_mark_room_read(*, user: AbstractBaseUser, room_slug: str) -> int:
    """The user opened a room: their unread mentions and direct messages of that room are read now.

    Only the caller's own rows are touched, so no membership check is needed (another room's slug
    simply matches nothing). Returns how many were marked; the open bells follow through the streams.
    """
    unread = Notification.objects.filter(recipient_id=user.pk, read=False, kind__in=ROOM_KINDS, payload__room=room_slug)
    with transaction.atomic():
        updated = unread.update(read=True)
        if updated:
            _read_publish_on_commit(user_id=user.pk, scope="room", room=room_slug)
    return updated


# --- Created by chat events (registered in NotificationsConfig.ready) ------------------------------------


def mentioned_names(body: str) -> list[str]:
    """The distinct ``@names`` of a message body, in order, at most MENTION_LIMIT (case preserved)."""
    names: dict[str, str] = {}
    if "@" not in body:  # most messages: no scan at all (the writer asks for every message of its batch)
        return []
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


def notifications_for_messages(
    *,
    messages: Sequence[Message],
    direct_members: dict[int, list[int]],
    exclude_names: Mapping[int, Iterable[str]] | None = None,
) -> list[Notification]:
    """Store the notifications new messages cause, in the caller's transaction (the chat writer's batch).

    Mentions reach active users who can see the room, never the author; in a direct-message room the
    other member is told about every message instead (a mention would only repeat that).
    ``direct_members``: the member ids of each direct room among the messages. Nothing is published here:
    the caller publishes the returned rows after its commit (``stream_events``). ``exclude_names``: per
    message id, lower-cased names not to notify (an edited message: those its earlier texts mentioned).
    """
    wanted: list[tuple[Message, list[str]]] = []
    all_names: set[str] = set()
    for message in messages:
        if not message.room.is_direct:
            names = [name.lower() for name in mentioned_names(message.body)]
            if exclude_names and message.pk in exclude_names:
                names = [name for name in names if name not in set(exclude_names[message.pk])]
            if names:
                wanted.append((message, names))
                all_names.update(names)
    by_name: dict[str, int] = {}
    if all_names:
        users = User.objects.annotate(name_lower=Lower("username")).filter(name_lower__in=all_names, is_active=True)
        by_name = dict(users.values_list("name_lower", "pk"))
    private_members: set[tuple[int, int]] = set()
    private_rooms = {m.room_id for m, _ in wanted if m.room.is_private}
    if private_rooms and by_name:
        from chat.models import Membership

        private_members = set(
            Membership.objects.filter(room_id__in=private_rooms, user_id__in=by_name.values()).values_list(
                "room_id", "user_id"
            )
        )
    direct_active: set[int] = set()
    direct_ids = {uid for ids in direct_members.values() for uid in ids}
    if direct_ids:
        direct_active = set(User.objects.filter(pk__in=direct_ids, is_active=True).values_list("pk", flat=True))
    rows: list[Notification] = []
    mentions = {m.pk: names for m, names in wanted}
    for message in messages:
        if message.room.is_direct:
            recipients = {uid: Notification.Kind.DIRECT_MESSAGE for uid in direct_members.get(message.room_id, ())
                          if uid != message.author_id and uid in direct_active}  # fmt: skip
        else:
            recipients = {}
            for name in mentions.get(message.pk, ()):
                uid = by_name.get(name)
                if uid is None or uid == message.author_id:
                    continue
                if message.room.is_private and (message.room_id, uid) not in private_members:
                    continue
                recipients[uid] = Notification.Kind.MENTION
        if not recipients:
            continue
        payload = _message_payload(message)
        rows.extend(Notification(recipient_id=uid, kind=kind, payload=payload) for uid, kind in recipients.items())
    if not rows:
        return []
    _lock_recipients(sorted({n.recipient_id for n in rows}))
    created = Notification.objects.bulk_create(rows, batch_size=BULK_BATCH_SIZE)
    if created[0].pk is None:  # a backend that cannot return ids from bulk INSERT
        raise NotificationError("this database cannot return ids from a bulk insert")
    return created


def stream_events(notifications: Sequence[Notification]) -> tuple[StreamEvent, ...]:
    """What the streams are sent for stored notifications (after their commit)."""
    return tuple(_event(n) for n in notifications)


def stream_events_publish_on_commit(events: Sequence[StreamEvent]) -> None:
    """For code without an event loop (a management command): publish once the transaction commits."""
    if events:
        transaction.on_commit(lambda: events_publish(events), robust=True)


def notification_for_member_added(*, membership: Membership, actor: AbstractBaseUser | None) -> Notification | None:
    """Tell a user they were added to a private room by someone else."""
    room = membership.room
    if not room.is_private or room.is_direct or (actor is not None and actor.pk == membership.user_id):
        return None
    if not membership.user.is_active:
        return None
    payload = {"room": room.slug, "room_name": room.name, "by": actor.get_username() if actor else None}
    return notification_create(recipient=membership.user, kind=Notification.Kind.ROOM_INVITE, payload=payload)


def on_member_added(membership: Membership, actor: AbstractBaseUser | None) -> None:
    """chat.services.member_added_listeners hook (called after the membership committed)."""
    notification_for_member_added(membership=membership, actor=actor)
