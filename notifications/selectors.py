"""Notification reads: a user's pages, one notification, the unread count, and replay batches for the stream."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404

from notifications.models import Notification
from notifications.publishing import StreamEvent, event_data


def notifications_page(
    *, user: AbstractBaseUser, before: int | None, limit: int, unread_only: bool = False
) -> list[Notification]:
    """The user's newest ``limit`` notifications older than ``before`` (all when None), newest first."""
    qs = Notification.objects.filter(recipient_id=user.pk)
    if before is not None:
        qs = qs.filter(id__lt=before)
    if unread_only:
        qs = qs.filter(read=False)
    return list(qs.order_by("-id")[:limit])


def notification_get_for_user(*, user: AbstractBaseUser, notification_id: int) -> Notification:
    """One of the user's notifications; another user's (or none) is Http404, never a 403 that confirms it."""
    notification = Notification.objects.filter(pk=notification_id, recipient_id=user.pk).first()
    if notification is None:
        raise Http404("no such notification")
    return notification


def notifications_unread_count(*, user: AbstractBaseUser) -> int:
    return Notification.objects.filter(recipient_id=user.pk, read=False).count()


def stream_events_after(*, user_id: int, after: int, limit: int) -> list[StreamEvent]:
    """One replay batch: the user's notifications with id > ``after``, oldest first, ready to send."""
    rows = (
        Notification.objects.filter(recipient_id=user_id, id__gt=after)
        .order_by("id")
        .values_list("id", "kind", "payload", "created", "read")[:limit]
    )
    return [
        StreamEvent(
            recipient_id=user_id,
            id=pk,
            kind=kind,
            data=event_data(id=pk, kind=kind, payload=payload, created=created, read=read),
        )
        for pk, kind, payload, created, read in rows
    ]
