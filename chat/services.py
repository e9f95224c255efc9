"""Chat writes: rooms, memberships, messages. Each validates, saves in a transaction, and publishes on commit."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import regex
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.text import slugify

from attachments.services import attachment_ids_parse, attachments_check
from chat.exceptions import InvalidInput, NotAllowed, NotFound
from chat.models import Membership, Message, Room
from chat.selectors import (
    direct_pair,
    direct_room_get,
    direct_room_slug,
    membership_get,
    room_longest_member,
    slug_is_reserved,
)
from chat.writer.events import (
    MessageDeleteWrite,
    MessageEditWrite,
    MessageWrite,
    NotificationsCreated,
    ReactionWrite,
    Write,
    WriteEvent,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)
UserModel = get_user_model()

# Listeners called after a commit, so that nothing is announced that is not stored; services stay free of
# transport imports. Messages have none: the chat writer (chat/writer) returns what it stored as events
# and publishes them itself (chat/publishing.py). A removed membership or an archived room is enforced by
# model signals instead (chat/enforcement.py), so that the admin's changes are too.
member_added_listeners: list[Callable[[Membership, User | None], None]] = []


def _on_commit_each(listeners: list[Callable], *args) -> None:
    for listener in list(listeners):
        transaction.on_commit(functools.partial(listener, *args), robust=True)


# A private room's derived slug ends in this many random characters, so that nobody can learn whether a
# private room of a given name exists by asking for its slug (issue 16, item 12).
PRIVATE_SLUG_SUFFIX_LENGTH = 8
SLUG_UNAVAILABLE = "the slug {slug!r} is not available: choose another, or leave slug out to get one"


def _free_slug(base: str) -> str:
    slug, n = base, 2
    while Room.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def _unique_slug(base: str, *, is_private: bool = False) -> str:
    """A free slug derived from a room name; never a reserved one (``dm-…`` is kept for direct rooms)."""
    base = slugify(base) or "room"
    if slug_is_reserved(base):
        base = f"room-{base}"
    base = base[:70]
    if is_private:
        base = f"{base}-{get_random_string(PRIVATE_SLUG_SUFFIX_LENGTH, 'abcdefghijklmnopqrstuvwxyz0123456789')}"
    return _free_slug(base)


def room_create(*, creator: User, name: str, slug: str | None = None, is_private: bool = False) -> Room:
    """Create a group room owned by its creator.

    A requested slug that is reserved or taken gets one answer, whoever holds it: it does not say whether a
    room the requester cannot see exists. A derived slug never takes a reserved one.
    """
    name = name.strip()
    if not name or len(name) > 120:
        raise InvalidInput("a room name must be 1 to 120 characters")
    with transaction.atomic():
        if slug:
            if slugify(slug) != slug or len(slug) > 80:
                raise InvalidInput("a slug may hold lower-case letters, digits, - and _ (up to 80)")
            if slug_is_reserved(slug) or Room.objects.filter(slug=slug).exists():
                raise InvalidInput(SLUG_UNAVAILABLE.format(slug=slug))
        else:
            slug = _unique_slug(name, is_private=is_private)
        try:
            with transaction.atomic():
                room = Room.objects.create(slug=slug, name=name, is_private=is_private, creator=creator)
        except IntegrityError:  # a concurrent create took the slug
            raise InvalidInput(SLUG_UNAVAILABLE.format(slug=slug)) from None
        Membership.objects.create(room=room, user=creator, role=Membership.Role.OWNER)
    return room


def _refuse_archived(room: Room) -> None:
    if room.is_archived:
        raise NotAllowed(f"the room {room.slug!r} is archived: its last member left; nothing can be sent to it")


def room_join(*, room: Room, user: User) -> Membership:
    """Join a public room (idempotent); private rooms are joined only by being added by an owner."""
    existing = membership_get(room=room, user=user)
    if existing is not None:
        return existing
    if room.is_private:
        raise NotFound(f"no room {room.slug!r} that you can see")
    _refuse_archived(room)
    try:
        with transaction.atomic():
            membership = Membership.objects.create(room=room, user=user)
    except IntegrityError:  # a concurrent join won
        return Membership.objects.get(room=room, user=user)
    return membership


@dataclass(frozen=True)
class RoomLeft:
    """What leaving changed: who owns the room now (None: nobody), and whether it was archived."""

    new_owner: str | None
    archived: bool


def room_leave(*, room: Room, user: User) -> RoomLeft:
    """The user leaves the room; their live subscriptions to it end on commit.

    An owner leaving hands the room to the member who joined first (ownership never lapses while anyone
    is left); the last member leaving a private room archives it (kept, hidden, closed), since nobody
    could ever be added to it again.
    """
    if room.is_direct:
        raise NotAllowed("you cannot leave a direct-message conversation")
    with transaction.atomic():
        # The room row lock serialises concurrent leaves: two members leaving at once cannot each still
        # count the other, which would leave the room without an owner or a private room unarchived.
        room = Room.objects.select_for_update().get(pk=room.pk)
        membership = Membership.objects.filter(room=room, user=user).first()
        if membership is None:
            raise NotFound(f"you are not a member of {room.slug!r}")
        membership.delete()
        new_owner: str | None = None
        if (
            membership.role == Membership.Role.OWNER
            and not room.memberships.filter(role=Membership.Role.OWNER).exists()
        ):
            heir = room_longest_member(room=room, exclude=user)
            if heir is not None:
                Membership.objects.filter(pk=heir.pk).update(role=Membership.Role.OWNER)
                new_owner = heir.user.get_username()
        archived = room.is_private and not room.memberships.exists()
        if archived:
            room.archived = timezone.now()
            room.save(update_fields=["archived"])
    return RoomLeft(new_owner=new_owner, archived=archived)


def _require_owner(*, room: Room, actor: User) -> None:
    membership = membership_get(room=room, user=actor)
    if membership is None or membership.role != Membership.Role.OWNER:
        raise NotAllowed("only the room's owner can change its members")
    if room.is_direct:
        raise NotAllowed("a direct-message conversation always has exactly its two members")
    if not room.is_private:
        raise InvalidInput("a public room has no member list to manage: anyone joins it and leaves it")


def room_member_add(*, room: Room, actor: User, username: str) -> Membership:
    """An owner adds a user to a private room (idempotent)."""
    _require_owner(room=room, actor=actor)
    user = UserModel.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise NotFound(f"no user {username!r}")
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(room=room, user=user)
        if created:
            _on_commit_each(member_added_listeners, membership, actor)
    return membership


def room_member_remove(*, room: Room, actor: User, username: str) -> None:
    """An owner removes a member; the removed user's live subscriptions to the room are closed on commit."""
    _require_owner(room=room, actor=actor)
    user = UserModel.objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"no user {username!r}")
    if user.pk == actor.pk:
        raise InvalidInput("an owner cannot remove themselves; use leave")
    with transaction.atomic():
        membership = Membership.objects.filter(room=room, user=user).first()
        if membership is None:
            raise NotFound(f"{username!r} is not a member of this room")
        if membership.role == Membership.Role.OWNER:
            raise NotAllowed(f"{username!r} is an owner of this room and cannot be removed; an owner may leave")
        membership.delete()


def message_validate(*, body: str, client_id: str | None, attachments: Any = None) -> tuple[str, str | None]:
    """Check a message's own fields; a message with attachments may have an empty body."""
    if not isinstance(body, str) or (not body.strip() and not attachments):
        raise InvalidInput("a message must not be empty")
    if len(body) > settings.CHAT_MESSAGE_MAX_LENGTH:
        raise InvalidInput(f"a message is at most {settings.CHAT_MESSAGE_MAX_LENGTH} characters")
    _storable(body, "a message")
    if client_id is not None:
        client_id = str(client_id).strip() or None
        if client_id is not None:
            if len(client_id) > 64:
                raise InvalidInput("client_id is at most 64 characters")
            _storable(client_id, "client_id")
    return body, client_id


def _storable(text: str, what: str) -> None:
    """Refuse text no database stores: NUL, or a lone surrogate (JSON's ``"\\ud800"`` decodes to one).

    Checked before the message joins a batch: found by the database inside it, such a value failed the whole
    batch (encoding to UTF-8 raises before any statement runs), refusing everyone's messages with it.
    """
    if "\x00" in text:
        raise InvalidInput(f"{what} must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} must be valid Unicode text (no unpaired surrogates)") from None


def reply_to_parse(raw: Any) -> int | None:
    """The ``reply_to`` of a SEND: a message id or nothing (the batch checks it is of the same room)."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise InvalidInput("reply_to must be the id of a message of this room")
    return raw


def message_prepare(
    *,
    room: Room,
    author: User,
    body: str,
    client_id: str | None = None,
    attachments: Any = None,
    reply_to: Any = None,
) -> MessageWrite:
    """Validate a message before it joins a write batch (bad input never reaches a batch); stores nothing.

    The author must be a member of a private room; a public room is joined by the batch that stores the
    author's first message there. The batch checks membership again under its room lock, and binds the
    uploads (``attachments``: ids) only if nobody took them meanwhile.
    """
    ids = attachment_ids_parse(attachments)
    body, client_id = message_validate(body=body, client_id=client_id, attachments=ids)
    reply = reply_to_parse(reply_to)
    if room.is_private and membership_get(room=room, user=author) is None:
        raise NotFound(f"no room {room.slug!r} that you can see")
    _refuse_archived(room)
    ids = attachments_check(room=room, author=author, ids=ids)
    return MessageWrite(room=room, author=author, body=body, client_id=client_id, attachments=ids, reply_to=reply)


def message_create(
    *,
    room: Room,
    author: User,
    body: str,
    client_id: str | None = None,
    attachments: Any = None,
    reply_to: Any = None,
) -> tuple[Message, bool]:
    """Store one message through the writer's batch code, for code without a server loop (shell, tests).

    Returns (message, created). Same rules as a SEND: stored once per client_id (a repeat stores nothing
    and only re-announces the stored message under its id), mentions notified in the same transaction,
    everything announced after the commit. Live code submits to ``chat.writer.get_writer()`` instead,
    which batches and publishes on the event loop.
    """
    from chat.writer.store import messages_store

    write = message_prepare(
        room=room, author=author, body=body, client_id=client_id, attachments=attachments, reply_to=reply_to
    )
    (result,) = messages_store(units=[[write]])
    if result.error is not None:
        raise result.error
    _publish_on_commit(result.events)
    first = result.events[0]
    return Message.objects.select_related("room", "author").get(pk=first.message["id"]), first.created


def _publish_on_commit(events: tuple[WriteEvent, ...]) -> None:
    from asgiref.sync import async_to_sync

    from chat.publishing import write_events_published
    from notifications.services import stream_events_publish_on_commit

    chat_events = [e for e in events if not isinstance(e, NotificationsCreated)]
    transaction.on_commit(lambda: async_to_sync(write_events_published)(chat_events), robust=True)
    for event in events:
        if isinstance(event, NotificationsCreated):
            stream_events_publish_on_commit(event.events)


# --- Changes of stored messages (issue 20) ---------------------------------------------------------------
# Validated here (bad input never reaches a batch); who may change what is decided by the batch under the
# room lock (chat/writer/changes.py), where the message's current state is known.


def _message_id(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise InvalidInput("id must be the id of a message of this room")
    return raw


def message_edit_prepare(*, room: Room, author: User, message_id: Any, body: Any) -> MessageEditWrite:
    """An edit of a stored message: a new text (the same rules as a new message's)."""
    body, _ = message_validate(body=body, client_id=None)
    return MessageEditWrite(room=room, author=author, message_id=_message_id(message_id), body=body)


def message_delete_prepare(*, room: Room, author: User, message_id: Any, by_staff: bool = False) -> MessageDeleteWrite:
    """A delete; ``by_staff``: asked in the admin (the caller checked the permission), any message."""
    return MessageDeleteWrite(room=room, author=author, message_id=_message_id(message_id), by_staff=by_staff)


def reaction_prepare(*, room: Room, author: User, message_id: Any, emoji: Any) -> ReactionWrite:
    """A reaction toggle: ``emoji`` must be exactly one emoji (``emoji_validate``)."""
    return ReactionWrite(room=room, author=author, message_id=_message_id(message_id), emoji=emoji_validate(emoji))


# One emoji: a pictograph or an emoji-presentation character (optionally with skin tone, variation selector,
# keycap or tag characters), a ZWJ sequence of those, a flag (two regional indicators) or a keycap (#, *, 0-9).
_EMOJI = regex.compile(
    r"(?:(?:\p{Extended_Pictographic}|\p{Emoji_Presentation})[\p{Emoji_Modifier}\uFE0F\U000E0020-\U000E007F]*"
    r"(?:\u200D(?:\p{Extended_Pictographic}|\p{Emoji_Presentation})[\p{Emoji_Modifier}\uFE0F]*)*"
    r"|\p{Regional_Indicator}{2}|[#*0-9]\uFE0F?\u20E3)"
)


def emoji_validate(raw: Any) -> str:
    """``raw`` if it is one emoji grapheme (one user-perceived character that is an emoji), else InvalidInput."""
    if not isinstance(raw, str) or not raw or len(raw) > 32:
        raise InvalidInput("a reaction is one emoji")
    if len(regex.findall(r"\X", raw)) != 1 or not _EMOJI.fullmatch(raw):
        raise InvalidInput("a reaction is one emoji")
    return raw


async def change_submit(write: Write) -> WriteEvent:
    """Store one write through this loop's writer; its first event (the message's, or the change's)."""
    from chat.writer.writer import get_writer

    return (await get_writer().submit([write]))[0]


def change_store(write: Write) -> WriteEvent:
    """Store one write without a server loop (WSGI, the admin under runserver, the shell); announced on commit."""
    from chat.writer.store import messages_store

    (result,) = messages_store(units=[[write]])
    if result.error is not None:
        raise result.error
    _publish_on_commit(result.events)
    return result.events[0]


def room_mark_read(*, room: Room, user: User, message_id: int) -> Membership:
    """Move the member's read marker forward (never backwards).

    In a direct room the other member's page shows "seen" from it, so a move is announced on the room
    topic after the commit: a MESSAGE with header ``event: read`` and ``{"user", "last_read_message_id"}``.
    """
    membership = membership_get(room=room, user=user)
    if membership is None:
        raise NotAllowed("only members can mark a room read")
    newest = Message.objects.filter(room=room, id__lte=message_id).order_by("-id").values_list("id", flat=True).first()
    if newest is not None and newest > membership.last_read_message_id:
        with transaction.atomic():
            moved = Membership.objects.filter(pk=membership.pk, last_read_message_id__lt=newest).update(
                last_read_message_id=newest
            )
            if moved and room.is_direct:
                _read_publish_on_commit(room=room, user=user, last_read_message_id=newest)
        membership.last_read_message_id = newest
    return membership


def _read_publish_on_commit(*, room: Room, user: User, last_read_message_id: int) -> None:
    from chat.destinations import room_topic
    from stompengine.broker import publish_on_commit

    body = {"user": user.get_username(), "last_read_message_id": last_read_message_id}
    # No event-seq: a read marker is state, not part of the room's replayed stream (the room detail
    # JSON gives the current markers to a client that was away).
    publish_on_commit(room_topic(room.slug), body, headers={"event": "read"})


def direct_room_get_or_create(*, user: User, other_username: str) -> tuple[Room, bool]:
    """The direct-message room of two users, created on first use (idempotent).

    Found by its kind and its pair of members only: a group room whose slug looks like a DM slug is never
    taken for one, and the unique pair key (not the slug) settles two concurrent first messages.
    """
    other = UserModel.objects.filter(username=other_username, is_active=True).first()
    if other is None:
        raise NotFound(f"no user {other_username!r}")
    if other.pk == user.pk:
        raise InvalidInput("a direct conversation needs another user")
    room = direct_room_get(user_a_id=user.pk, user_b_id=other.pk)
    if room is not None:
        return room, False
    low, high = direct_pair(user.pk, other.pk)
    try:
        with transaction.atomic():
            room = Room.objects.create(
                slug=_free_slug(direct_room_slug(user.pk, other.pk)),
                name=f"{user.get_username()} & {other.get_username()}",
                kind=Room.Kind.DIRECT,
                is_private=True,
                creator=user,
                direct_low_id=low,
                direct_high_id=high,
            )
            Membership.objects.create(room=room, user=user, role=Membership.Role.MEMBER)
            Membership.objects.create(room=room, user=other, role=Membership.Role.MEMBER)
    except IntegrityError:  # a concurrent first message created the pair's room
        room = direct_room_get(user_a_id=user.pk, user_b_id=other.pk)
        if room is None:
            raise
        return room, False
    return room, True


def room_enter_member(*, slug: str, user: User) -> Room | None:
    """The read half of ``room_enter``, one query and no write: the room when the user is already a member
    (NotAllowed if it is archived), None when it is a public room they must join first (``room_enter``),
    NotFound when there is no such room or it is private and they are not a member."""
    from chat.selectors import room_with_membership

    room = room_with_membership(slug=slug, user=user)
    return room_member_verdict(slug=slug, room=room, is_member=room is not None and room.is_member)


def room_member_verdict(*, slug: str, room: Room | None, is_member: bool) -> Room | None:
    """``room_enter_member``'s answer from what was read: the room of ``slug`` (None: none) and whether the
    user is a member (also when it was read for many users at once)."""
    if room is None or (room.is_private and not is_member):
        raise NotFound(f"no room {slug!r} that you can see")
    if not is_member:
        return None
    _refuse_archived(room)
    return room


def room_enter(*, slug: str, user: User) -> Room:
    """The room a user subscribes to live: members only, and a public room is joined on the way in."""
    from chat.selectors import room_visible_get

    member_of = room_enter_member(slug=slug, user=user)
    if member_of is not None:
        return member_of
    room = room_visible_get(slug=slug, user=user)
    if not room.is_private:
        room_join(room=room, user=user)
    elif membership_get(room=room, user=user) is None:
        raise NotFound(f"no room {slug!r} that you can see")
    _refuse_archived(room)
    return room
