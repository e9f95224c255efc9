"""Chat data: rooms (group rooms and direct-message pairs), memberships, messages and their changes.

A message may be edited (the previous text kept in ``MessageEdit``), deleted (a tombstone: text, history,
reactions and attachments erased), reacted to (``Reaction``) and replied to (``reply_to``). Every change
of a room, a new message included, is one ``RoomEvent`` numbered 1, 2, 3... per room by the chat writer in
the transaction of the change: the ordered stream a STOMP client resumes from (``since-seq``).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

# Slugs that start so belong to direct rooms: no group room may take one, whether asked for or derived.
RESERVED_SLUG_PREFIX = "dm-"


class Room(models.Model):
    class Kind(models.TextChoices):
        GROUP = "group", "Group room"
        DIRECT = "direct", "Direct messages"

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GROUP)
    is_private = models.BooleanField(default=False, help_text="Only members can read or join it.")
    creator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="created_rooms"
    )
    created = models.DateTimeField(auto_now_add=True)
    # Set when the last member left a private room: kept (history, search, attachments) but hidden from
    # lists and closed to sends and subscriptions. Nobody is a member any more, so nobody can reopen it
    # except an administrator (clear the field and add a member in the admin).
    archived = models.DateTimeField(
        null=True, blank=True, help_text="When the room was archived (its last member left)."
    )
    # A direct room is found by its pair (lower user id first), never by its slug: a slug can be taken by
    # anyone, the pair key only by the pair. The unique constraint settles two concurrent first messages.
    direct_low = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    direct_high = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=~Q(kind="direct") | Q(is_private=True), name="direct_rooms_are_private"),
            models.UniqueConstraint(
                fields=["direct_low", "direct_high"], condition=Q(kind="direct"), name="one_direct_room_per_pair"
            ),
            models.CheckConstraint(
                condition=Q(kind="direct") | Q(direct_low__isnull=True, direct_high__isnull=True),
                name="only_direct_rooms_have_a_pair",
            ),
            models.CheckConstraint(
                condition=~Q(kind="direct") | Q(direct_low__lt=F("direct_high")), name="direct_pair_lower_id_first"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_direct(self) -> bool:
        return self.kind == self.Kind.DIRECT

    @property
    def is_archived(self) -> bool:
        return self.archived is not None

    def clean(self) -> None:
        """Form validation (the admin): the same slug and pair rules the services and constraints keep."""
        if self.is_direct and (self.direct_low_id is None or self.direct_high_id is None):
            raise ValidationError("a direct room needs its pair of users; open one with POST /api/dms/<user>/")
        if not self.is_direct and (self.direct_low_id is not None or self.direct_high_id is not None):
            raise ValidationError("only a direct room has a pair of users")
        if not self.is_direct and self.slug.startswith(RESERVED_SLUG_PREFIX):
            raise ValidationError({"slug": f"slugs starting with {RESERVED_SLUG_PREFIX} are kept for direct rooms"})


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined = models.DateTimeField(auto_now_add=True)
    # The id of the newest message the member has read; ids grow with time, so unread = id > this.
    last_read_message_id = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="one_membership_per_user_and_room")]
        indexes = [models.Index(fields=["room", "user"])]

    def __str__(self) -> str:
        return f"{self.user} in {self.room} ({self.role})"


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages")
    body = models.TextField()
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    # Chosen by the client so that a resent message (after a lost RECEIPT) is stored once.
    client_id = models.CharField(max_length=64, null=True, blank=True)
    # Set by an edit (the time of the newest one); the texts it replaced are MessageEdit rows.
    edited = models.DateTimeField(null=True, blank=True)
    # A tombstone: the row stays (replies and history keep their place), its text and files are gone.
    # db_default: a worker of the previous release, still running after the migration during a rolling
    # deploy, inserts messages without naming this column.
    deleted = models.BooleanField(default=False, db_default=False)
    # Replies point into the same room (checked by the writer under the room lock); SET_NULL for a
    # message removed outright (a cascade of a user's deletion), never by a chat delete.
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")

    class Meta:
        ordering = ["id"]
        # (room, id) serves both "latest N of a room" (backwards) and "messages after id" (forwards).
        indexes = [models.Index(fields=["room", "id"], name="message_room_id")]
        constraints = [
            models.UniqueConstraint(
                fields=["author", "room", "client_id"],
                condition=Q(client_id__isnull=False),
                name="message_client_id_once_per_author_and_room",
            )
        ]

    def __str__(self) -> str:
        return f"{self.author} in {self.room}: {self.body[:40]}"


class MessageEdit(models.Model):
    """A text a message had before an edit (what the admin shows as its history); erased by a delete."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="edits")
    body = models.TextField()
    # When this text was replaced.
    replaced = models.DateTimeField()

    class Meta:
        ordering = ["message", "id"]

    def __str__(self) -> str:
        return f"edit of message {self.message_id} at {self.replaced:%Y-%m-%d %H:%M:%S}"


class Reaction(models.Model):
    """One user's emoji on one message (toggled by the writer; at most REACTIONS_MAX distinct per message)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    emoji = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["message", "id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "user", "emoji"], name="one_reaction_per_user_and_emoji")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.emoji} on message {self.message_id}"


class RoomEvent(models.Model):
    """One change of a room, numbered per room (``seq``) in commit order: what ``since-seq`` replays."""

    class Kind(models.TextChoices):
        CREATED = "created", "Message created"
        EDITED = "edited", "Message edited"
        DELETED = "deleted", "Message deleted"
        REACTION = "reaction", "Reactions changed"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="events")
    seq = models.BigIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # SET_NULL, not CASCADE: a room's numbers come from MAX(seq), so its newest events must outlive a
    # message removed outright, or their numbers would be given out a second time.
    # No constraint in the database (db_constraint=False): the writer inserts a message and its event in one
    # transaction, the id from that INSERT's RETURNING, so the reference is right by construction, and Django
    # applies SET_NULL itself when a message is deleted. PostgreSQL checked the constraint at COMMIT with one
    # lookup per event row through a plan its backend cached while chat_message was still small: a sequential
    # scan per row, and the COMMIT grew with the table (1,000 -> 2,600 stored messages/s on a fresh database).
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    created = models.DateTimeField()

    class Meta:
        ordering = ["room", "seq"]
        constraints = [models.UniqueConstraint(fields=["room", "seq"], name="room_event_seq_once_per_room")]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq} {self.kind} {self.message_id}"
