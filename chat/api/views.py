"""REST endpoints for rooms, members, history, message changes and read markers. Thin: parse, call a service,
shape JSON."""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, services
from chat.api.serializers import (
    MemberChangeSerializer,
    MemberSerializer,
    MessageCreateSerializer,
    MessageEditSerializer,
    ReactionSerializer,
    ReadMarkerSerializer,
    RoomCreateSerializer,
    RoomSerializer,
    UserSerializer,
    message_json,
)
from chat.exceptions import ChatError, RateLimited
from chat.models import Room
from chat.writer.events import Write, WriteEvent
from chat.writer.writer import message_writes_submit
from stompengine.realtime.limits import SendLimits, user_send_budget

# The user directory's page (GET /api/users/): enough for a picker, small enough to be cheap to ask often.
DIRECTORY_PAGE_SIZE = 20
DIRECTORY_PAGE_MAX = 50
USERNAME_MAX_LENGTH = 150


def chat_error_response(exc: ChatError) -> Response:
    return Response({"detail": str(exc), "code": exc.code}, status=exc.status)


def _int_param(request: Request, name: str, default: int | None, *, minimum: int = 0) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: [f"{name} must be a whole number"]}) from None
    if value < minimum:
        raise ValidationError({name: [f"{name} must be at least {minimum}"]})
    return value


class ChatAPIView(APIView):
    """Maps chat rule violations to JSON 4xx responses."""

    def handle_exception(self, exc):
        if isinstance(exc, ChatError):
            return chat_error_response(exc)
        return super().handle_exception(exc)

    def room(self, request: Request, slug: str) -> Room:
        return selectors.room_visible_get(slug=slug, user=request.user)


class RoomListView(ChatAPIView):
    def get(self, request: Request) -> Response:
        rooms = selectors.rooms_for_user(user=request.user)
        return Response({"results": RoomSerializer(rooms, many=True).data})

    def post(self, request: Request) -> Response:
        data = RoomCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        room = services.room_create(creator=request.user, **data.validated_data)
        room = selectors.rooms_for_user(user=request.user).get(pk=room.pk)
        return Response(RoomSerializer(room).data, status=status.HTTP_201_CREATED)


class RoomDetailView(ChatAPIView):
    def get(self, request: Request, slug: str) -> Response:
        room = self.room(request, slug)
        rooms = selectors.rooms_for_user(user=request.user, include_archived=True)
        # The room's newest event number, read before the page reads its history: the page subscribes with
        # since-seq from it, so a change made between the history read and the SUBSCRIBE still reaches it.
        event_seq = selectors.room_newest_seq(room_id=room.pk)
        return Response({**RoomSerializer(rooms.get(slug=slug)).data, "event_seq": event_seq})


class RoomJoinView(ChatAPIView):
    def post(self, request: Request, slug: str) -> Response:
        membership = services.room_join(room=self.room(request, slug), user=request.user)
        return Response(MemberSerializer(membership).data)


class RoomLeaveView(ChatAPIView):
    def post(self, request: Request, slug: str) -> Response:
        left = services.room_leave(room=self.room(request, slug), user=request.user)
        return Response({"room": slug, "new_owner": left.new_owner, "archived": left.archived})


class RoomMembersView(ChatAPIView):
    def get(self, request: Request, slug: str) -> Response:
        room = self.room(request, slug)
        return Response({"results": MemberSerializer(selectors.room_members(room=room), many=True).data})

    def post(self, request: Request, slug: str) -> Response:
        data = MemberChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.room_member_add(
            room=self.room(request, slug), actor=request.user, username=data.validated_data["username"]
        )
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    def delete(self, request: Request, slug: str) -> Response:
        data = MemberChangeSerializer(data=request.data or request.query_params)
        data.is_valid(raise_exception=True)
        services.room_member_remove(
            room=self.room(request, slug), actor=request.user, username=data.validated_data["username"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoomMemberView(ChatAPIView):
    """``DELETE /api/rooms/<slug>/members/<username>/``: the owner removes that member (a private room)."""

    def delete(self, request: Request, slug: str, username: str) -> Response:
        services.room_member_remove(room=self.room(request, slug), actor=request.user, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserDirectoryView(ChatAPIView):
    """``GET /api/users/?q=<prefix>&after=<username>&limit=``: active users whose name starts with the
    prefix (any case), by name; ``next_after`` is the cursor of the next page (null on the last)."""

    def get(self, request: Request) -> Response:
        prefix = request.query_params.get("q", "").strip()
        if len(prefix) > USERNAME_MAX_LENGTH:
            raise ValidationError({"q": [f"q is at most {USERNAME_MAX_LENGTH} characters"]})
        after = request.query_params.get("after") or None
        limit = min(_int_param(request, "limit", DIRECTORY_PAGE_SIZE, minimum=1) or 1, DIRECTORY_PAGE_MAX)
        users = selectors.users_directory(prefix=prefix, after=after, limit=limit)
        next_after = users[-1].get_username() if len(users) == limit else None
        return Response({"results": UserSerializer(users, many=True).data, "next_after": next_after})


class RoomMessagesView(ChatAPIView):
    """History with cursor pagination: ``?before=<id>&limit=`` (newest first page), or ``?after=<id>``, or
    ``?around=<id>`` (that message in the middle of its context: a search result opened in its room)."""

    def get(self, request: Request, slug: str) -> Response:
        room = self.room(request, slug)
        limit = min(_int_param(request, "limit", 50, minimum=1) or 50, settings.CHAT_HISTORY_PAGE_MAX)
        around = _int_param(request, "around", None, minimum=1)
        if around is not None:
            messages, more_older, more_newer = selectors.messages_around(room=room, around=around, limit=limit)
            return Response({
                "results": [message_json(m) for m in messages],
                "next_before": messages[0].id if more_older else None,
                "next_after": messages[-1].id if more_newer else None,
            })  # fmt: skip
        after = _int_param(request, "after", None)
        if after is not None:
            messages = selectors.messages_after(room=room, after=after, limit=limit)
            next_after = messages[-1].id if len(messages) == limit else None
            return Response({"results": [message_json(m) for m in messages], "next_after": next_after})
        before = _int_param(request, "before", None, minimum=1)
        messages = selectors.messages_before(room=room, before=before, limit=limit)
        older = messages[0].id if len(messages) == limit else None
        return Response({"results": [message_json(m) for m in messages], "next_before": older})

    def post(self, request: Request, slug: str) -> Response:
        data = MessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        room = self.room(request, slug)
        if not isinstance(request._request, ASGIRequest):  # WSGI or the test client: no server loop to batch on
            message, created = services.message_create(room=room, author=request.user, **data.validated_data)
            return Response(message_json(message), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
        write = services.message_prepare(room=room, author=request.user, **data.validated_data)
        # The same writer as STOMP SENDs: async_to_sync runs the submit on the server's event loop (from the
        # request's thread, not the writer's) and returns once the batch committed and was announced.
        (event, *_) = async_to_sync(message_writes_submit)([write])
        return Response(event.message, status=status.HTTP_201_CREATED if event.created else status.HTTP_200_OK)


def _store_change(request: Request, write: Write) -> WriteEvent:
    """Store one edit, delete or reaction through the writer (on the server's loop), or directly without one."""
    if not isinstance(request._request, ASGIRequest):  # WSGI or the test client: no server loop to batch on
        return services.change_store(write)
    return async_to_sync(services.change_submit)(write)


def _spend_send_budget(request: Request) -> None:
    """Edits and reactions count against the user's send budget, as their STOMP SENDs do."""
    if not user_send_budget.take(request.user.pk, SendLimits.from_settings(), time.monotonic(), 1):
        raise RateLimited("too many messages, edits and reactions: slow down")


class MessageDetailView(ChatAPIView):
    """``PATCH`` ``{"body"}``: edit (the author); ``DELETE``: leave a tombstone (the author or the room's owner)."""

    def patch(self, request: Request, slug: str, message_id: int) -> Response:
        data = MessageEditSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        write = services.message_edit_prepare(
            room=self.room(request, slug), author=request.user, message_id=message_id, body=data.validated_data["body"]
        )
        _spend_send_budget(request)
        return Response(_store_change(request, write).body)

    def delete(self, request: Request, slug: str, message_id: int) -> Response:
        write = services.message_delete_prepare(
            room=self.room(request, slug), author=request.user, message_id=message_id
        )
        return Response(_store_change(request, write).body)


class MessageReactionsView(ChatAPIView):
    """``POST`` ``{"emoji"}``: toggle the caller's reaction; answers ``{"id", "reactions"}``."""

    def post(self, request: Request, slug: str, message_id: int) -> Response:
        data = ReactionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        write = services.reaction_prepare(
            room=self.room(request, slug),
            author=request.user,
            message_id=message_id,
            emoji=data.validated_data["emoji"],
        )
        _spend_send_budget(request)
        return Response(_store_change(request, write).body)


class RoomReadView(ChatAPIView):
    def post(self, request: Request, slug: str) -> Response:
        data = ReadMarkerSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.room_mark_read(
            room=self.room(request, slug), user=request.user, message_id=data.validated_data["message_id"]
        )
        return Response({"last_read_message_id": membership.last_read_message_id})


class DirectRoomView(ChatAPIView):
    """``POST /api/dms/<username>/``: the direct-message room with that user, created on first use."""

    def post(self, request: Request, username: str) -> Response:
        room, created = services.direct_room_get_or_create(user=request.user, other_username=username)
        room = selectors.rooms_for_user(user=request.user).get(pk=room.pk)
        return Response(RoomSerializer(room).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
