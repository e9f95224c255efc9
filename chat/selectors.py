"""Chat reads: which rooms a user sees, history pages, unread counts. No writes here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Exists, F, Func, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from chat.exceptions import NotFound
from chat.models import RESERVED_SLUG_PREFIX, Membership, Message, Reaction, Room, RoomEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def membership_get(*, room: Room, user: User) -> Membership | None:
    return Membership.objects.filter(room=room, user=user).first()


def user_is_member(*, room: Room, user: User) -> bool:
    return Membership.objects.filter(room=room, user=user).exists()


def room_visible_get(*, slug: str, user: User) -> Room:
    """A room the user may see: any public room, or a private one they belong to (else NotFound)."""
    room = Room.objects.filter(slug=slug).first()
    if room is None or (room.is_private and not user_is_member(room=room, user=user)):
        raise NotFound(f"no room {slug!r} that you can see")
    return room


def room_with_membership(*, slug: str, user: User) -> Room | None:
    """The room of ``slug`` (None: no such room) with ``is_member``, whether ``user`` belongs to it, read in
    one query (the room row and an EXISTS on the membership): a subscribe's check in a reconnect storm."""
    is_member = Exists(Membership.objects.filter(room=OuterRef("pk"), user=user))
    return Room.objects.filter(slug=slug).annotate(is_member=is_member).first()


def room_members_among(*, slug: str, user_ids: list[int]) -> tuple[Room | None, frozenset[int]]:
    """The room of ``slug`` (None: no such room) and which of ``user_ids`` are its members: the membership
    checks of a burst of subscribes to one room in two queries (ids asked 500 at a time)."""
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        return None, frozenset()
    wanted, members = sorted(set(user_ids)), set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        members.update(Membership.objects.filter(room=room, user_id__in=chunk).values_list("user_id", flat=True))
    return room, frozenset(members)


def rooms_for_user(*, user: User, include_archived: bool = False) -> QuerySet[Room]:
    """Public rooms and the user's private rooms, each with ``is_member``, ``role``, ``unread``,
    ``last_read_message_id`` (the user's marker) and, in a direct room, ``other_last_read_message_id``
    (the other member's: what "seen" is shown from). Archived rooms are left out unless asked for."""
    my_membership = Membership.objects.filter(room=OuterRef("pk"), user=user)
    # Nested one level deeper (inside the message count), the room is OuterRef(OuterRef("pk")).
    my_read_marker = Membership.objects.filter(room=OuterRef(OuterRef("pk")), user=user).values("last_read_message_id")
    unread = (
        Message.objects.filter(room=OuterRef("pk"), id__gt=Subquery(my_read_marker[:1]))
        .exclude(author=user)
        .order_by()
        .annotate(n=Func(F("id"), function="COUNT"))
        .values("n")
    )
    # A direct room has exactly two members; for a group room this is None (no "seen" there).
    other_marker = Membership.objects.filter(room=OuterRef("pk"), room__kind=Room.Kind.DIRECT).exclude(user=user)
    rooms = Room.objects.filter(Q(is_private=False) | Exists(my_membership))
    if not include_archived:
        rooms = rooms.filter(archived__isnull=True)
    return (
        rooms.annotate(
            is_member=Exists(my_membership),
            role=Subquery(my_membership.values("role")[:1]),
            unread=Coalesce(Subquery(unread, output_field=IntegerField()), Value(0)),
            last_read_message_id=Subquery(my_membership.values("last_read_message_id")[:1]),
            other_last_read_message_id=Subquery(other_marker.values("last_read_message_id")[:1]),
        )
        .select_related("creator")
        .order_by("kind", "name")
    )


def room_members(*, room: Room) -> QuerySet[Membership]:
    return Membership.objects.filter(room=room).select_related("user").order_by("user__username")


def room_longest_member(*, room: Room, exclude: User) -> Membership | None:
    """The member who joined the room first (ties: the older membership row), other than ``exclude``:
    who becomes owner when the owner leaves."""
    members = Membership.objects.filter(room=room).exclude(user=exclude).select_related("user")
    return members.order_by("joined", "id").first()


def users_directory(*, prefix: str, after: str | None, limit: int) -> list[User]:
    """Active users whose name starts with ``prefix`` (any case), by name, after the name ``after``."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(is_active=True, username__istartswith=prefix)
    if after:
        users = users.filter(username__gt=after)
    return list(users.order_by("username")[:limit])


def messages_for_json(queryset: QuerySet[Message]) -> QuerySet[Message]:
    """``queryset`` with what ``message_json`` reads joined or prefetched (no query per message)."""
    reactions = Prefetch("reactions", queryset=Reaction.objects.select_related("user").order_by("id"))
    return queryset.select_related("author", "room", "reply_to__author").prefetch_related("attachments", reactions)


def messages_before(*, room: Room, before: int | None, limit: int) -> list[Message]:
    """The newest ``limit`` messages older than ``before`` (all when None), oldest first."""
    qs = messages_for_json(Message.objects.filter(room=room))
    if before is not None:
        qs = qs.filter(id__lt=before)
    return list(reversed(qs.order_by("-id")[:limit]))


def messages_after(*, room: Room, after: int, limit: int) -> list[Message]:
    """Messages newer than ``after``, oldest first (resume after a reconnect)."""
    messages = messages_for_json(Message.objects.filter(room=room, id__gt=after))
    return list(messages.order_by("id")[:limit])


def messages_around(*, room: Room, around: int, limit: int) -> tuple[list[Message], bool, bool]:
    """Message ``around`` of the room with up to ``limit`` messages around it (about half older), oldest
    first, and whether older and newer ones remain; NotFound when the room has no such message."""
    if not Message.objects.filter(room=room, pk=around).exists():
        raise NotFound(f"no message {around} in this room")
    qs = messages_for_json(Message.objects.filter(room=room))
    older = list(qs.filter(id__lt=around).order_by("-id")[: limit + 1])
    newer = list(qs.filter(id__gte=around).order_by("id")[: limit + 1])  # starts with the message itself
    # About half before; where one side runs short, the other fills the page.
    keep_newer = min(len(newer), limit - min(len(older), (limit - 1) // 2))
    keep_older = min(len(older), limit - keep_newer)
    more_older, more_newer = len(older) > keep_older, len(newer) > keep_newer
    older, newer = older[:keep_older], newer[:keep_newer]
    return [*reversed(older), *newer], more_older, more_newer


def message_previous_id(*, message: Message) -> int:
    """The id of the room's message before this one (0 for the first). Fixed once ``message`` has committed:
    a room's messages commit in id order (``message_create`` locks the room)."""
    previous = (
        Message.objects.filter(room_id=message.room_id, id__lt=message.pk).order_by("-id").values_list("id", flat=True)
    )
    return previous.first() or 0


def room_newest_seq(*, room_id: int | QuerySet) -> int:
    """The room's newest event number (0: no event yet)."""
    rows = RoomEvent.objects.filter(room_id=room_id).order_by("-seq").values_list("seq", flat=True)
    return rows.first() or 0


def creation_seq_subquery() -> Subquery:
    """For a query of messages: the event number of each one's creation (None: older than the stream)."""
    created = RoomEvent.objects.filter(message_id=OuterRef("pk"), kind=RoomEvent.Kind.CREATED).values("seq")[:1]
    return Subquery(created, output_field=IntegerField())


def slug_is_reserved(slug: str) -> bool:
    return slug.startswith(RESERVED_SLUG_PREFIX)


def direct_pair(user_a_id: int, user_b_id: int) -> tuple[int, int]:
    """The key of a direct room: both user ids, lower first."""
    low, high = sorted((user_a_id, user_b_id))
    return low, high


def direct_room_slug(user_a_id: int, user_b_id: int) -> str:
    """The one slug scheme for direct-message rooms: both user ids, lower first (a name, never the lookup key)."""
    low, high = direct_pair(user_a_id, user_b_id)
    return f"{RESERVED_SLUG_PREFIX}{low}-{high}"


def direct_room_get(*, user_a_id: int, user_b_id: int) -> Room | None:
    """The direct room of two users, found by its kind and its pair of members only (never by its slug)."""
    low, high = direct_pair(user_a_id, user_b_id)
    return Room.objects.filter(kind=Room.Kind.DIRECT, direct_low_id=low, direct_high_id=high).first()
