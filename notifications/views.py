"""Notification REST endpoints under /api/notifications/: the stream ticket, pages, read markers, counts."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication

from notifications import selectors, services
from notifications.models import Notification
from notifications.publishing import notification_fields
from notifications.tickets import TooManyTickets, stream_ticket_issue

PAGE_DEFAULT = 50
PAGE_MAX = 200
STREAM_PATH = "/api/notifications/stream/"
ROOM_SLUG_MAX = 80  # chat's room slugs are at most this long (RoomCreateSerializer)


def notification_json(notification: Notification) -> dict:
    """The same fields as the stream's ``data:`` JSON."""
    return notification_fields(
        id=notification.pk,
        kind=notification.kind,
        payload=notification.payload,
        created=notification.created,
        read=notification.read,
    )


def _int_param(request: Request, name: str, *, minimum: int, maximum: int | None = None) -> int | None:
    raw = request.query_params.get(name) if request.method == "GET" else request.data.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationError({name: [f"{name} must be a whole number"]}) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ValidationError({name: [f"{name} must be between {minimum} and {maximum or 'any'}"]})
    return value


class StreamTicketView(APIView):
    """``POST``: a single-use ticket for ``stream/?ticket=``; only a JWT buys one (never a cookie alone)."""

    authentication_classes = [JWTAuthentication]

    def post(self, request: Request) -> Response:
        # request.auth is the validated access token: the stream this ticket opens ends when it expires.
        access_expires = datetime.fromtimestamp(int(request.auth["exp"]), tz=UTC)
        try:
            ticket = stream_ticket_issue(user=request.user, access_expires=access_expires)
        except TooManyTickets:
            limit = settings.SSE_MAX_STREAMS_PER_USER
            return Response(
                {"detail": f"too many unused stream tickets: at most {limit} at once; open a stream with one first",
                 "code": "too-many-tickets", "limit": limit},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Cache-Control": "no-store"},
            )  # fmt: skip
        return Response(
            {"ticket": ticket, "expires_in": settings.SSE_TICKET_TTL, "stream": STREAM_PATH},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class NotificationListView(APIView):
    """``GET ?before=<id>&limit=&unread=1``: newest first; ``next_before`` is the cursor of the next page."""

    def get(self, request: Request) -> Response:
        before = _int_param(request, "before", minimum=1)
        limit = _int_param(request, "limit", minimum=1, maximum=PAGE_MAX) or PAGE_DEFAULT
        unread_only = request.query_params.get("unread") in ("1", "true", "yes")
        page = selectors.notifications_page(user=request.user, before=before, limit=limit, unread_only=unread_only)
        return Response(
            {
                "results": [notification_json(n) for n in page],
                "next_before": page[-1].pk if len(page) == limit else None,
            }
        )


class NotificationReadView(APIView):
    def post(self, request: Request, notification_id: int) -> Response:
        notification = selectors.notification_get_for_user(user=request.user, notification_id=notification_id)
        return Response(notification_json(services.notification_mark_read(notification=notification)))


class NotificationReadAllView(APIView):
    """``POST {up_to?}``: mark everything read (or everything up to an id the client has seen)."""

    def post(self, request: Request) -> Response:
        up_to = _int_param(request, "up_to", minimum=0)
        updated = services.notifications_mark_all_read(user=request.user, up_to=up_to)
        return Response({"updated": updated, "unread": selectors.notifications_unread_count(user=request.user)})


class NotificationReadRoomView(APIView):
    """``POST {room: <slug>}``: the caller opened that room; its mentions and direct messages are read."""

    def post(self, request: Request) -> Response:
        room = request.data.get("room") if isinstance(request.data, dict) else None
        if not isinstance(room, str) or not room.strip() or len(room) > ROOM_SLUG_MAX:
            raise ValidationError({"room": [f"room must be the slug of a room (1 to {ROOM_SLUG_MAX} characters)"]})
        updated = services.notifications_mark_room_read(user=request.user, room_slug=room.strip())
        return Response({"updated": updated, "unread": selectors.notifications_unread_count(user=request.user)})


class UnreadCountView(APIView):
    def get(self, request: Request) -> Response:
        return Response({"unread": selectors.notifications_unread_count(user=request.user)})
