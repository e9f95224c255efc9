"""JSON shapes of rooms, members and messages (the STOMP broadcast uses ``message_json`` too)."""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework import serializers

from attachments.links import attachment_json
from chat.models import Membership, Message, Room

REPLY_EXCERPT_LENGTH = 100


def reactions_json(reactions: Iterable[tuple[str, str]]) -> list[dict]:
    """``[{"emoji", "count", "users"}]`` from (username, emoji) pairs in the order they were added: emoji in
    the order of their first reaction, users in the order they reacted."""
    by_emoji: dict[str, list[str]] = {}
    for username, emoji in reactions:
        by_emoji.setdefault(emoji, []).append(username)
    return [{"emoji": emoji, "count": len(users), "users": users} for emoji, users in by_emoji.items()]


def reply_json(parent: Message | None) -> dict | None:
    """What a reply shows of the message it answers: its id, author and the start of its text."""
    if parent is None:
        return None
    body = " ".join(parent.body.split())
    if len(body) > REPLY_EXCERPT_LENGTH:
        body = body[: REPLY_EXCERPT_LENGTH - 1] + "…"
    return {"id": parent.pk, "author": parent.author.get_username(), "excerpt": body}


def message_json(
    message: Message, attachments: list | None = None, reactions: Iterable[tuple[str, str]] | None = None
) -> dict:
    """The one representation of a message, in REST history and in STOMP broadcasts alike.

    ``attachments``: the message's Attachment rows when the caller has them (the writer's batch);
    otherwise prefetched ones (``prefetch_related("attachments")``) or one query. ``reactions``: its
    (username, emoji) pairs in order when the caller has them; otherwise prefetched
    (``chat.selectors.messages_for_json``) or one query. A deleted message (a tombstone) shows no text and no files.
    """
    if attachments is None:
        attachments = list(message.attachments.all())
    if reactions is None:
        reactions = [(r.user.get_username(), r.emoji) for r in message.reactions.all()]
    return {
        "id": message.id,
        "room": message.room.slug,
        "author": message.author.get_username(),
        "body": "" if message.deleted else message.body,
        "created": message.created.isoformat(),
        "client_id": message.client_id,
        "attachments": [] if message.deleted else [attachment_json(a) for a in attachments],
        "edited": message.edited.isoformat() if message.edited else None,
        "deleted": message.deleted,
        "reply_to": reply_json(message.reply_to) if message.reply_to_id else None,
        "reactions": reactions_json(reactions),
    }


class RoomSerializer(serializers.ModelSerializer):
    creator = serializers.CharField(source="creator.username", default=None, read_only=True)
    is_member = serializers.BooleanField(read_only=True, default=False)
    role = serializers.CharField(read_only=True, default=None, allow_null=True)
    unread = serializers.IntegerField(read_only=True, default=0)
    # The caller's read marker (the "new messages" divider), and in a direct room the other member's ("seen").
    last_read_message_id = serializers.IntegerField(read_only=True, default=None, allow_null=True)
    other_last_read_message_id = serializers.IntegerField(read_only=True, default=None, allow_null=True)

    class Meta:
        model = Room
        fields = [
            "slug", "name", "kind", "is_private", "creator", "created", "archived", "is_member", "role", "unread",
            "last_read_message_id", "other_last_read_message_id",
        ]  # fmt: skip
        read_only_fields = fields


class RoomCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    slug = serializers.CharField(max_length=80, required=False, allow_blank=True)
    is_private = serializers.BooleanField(default=False)


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["username", "role", "joined"]


class MemberChangeSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)


class MessageCreateSerializer(serializers.Serializer):
    body = serializers.CharField(trim_whitespace=False, allow_blank=True)
    client_id = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)
    attachments = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, allow_null=True)
    reply_to = serializers.IntegerField(min_value=1, required=False, allow_null=True)


class MessageEditSerializer(serializers.Serializer):
    body = serializers.CharField(trim_whitespace=False, allow_blank=True)


class ReactionSerializer(serializers.Serializer):
    emoji = serializers.CharField(trim_whitespace=False, max_length=64)


class ReadMarkerSerializer(serializers.Serializer):
    """``{"last_read_message_id": n}``, or ``{"message_id": n}`` as first published."""

    last_read_message_id = serializers.IntegerField(min_value=0, required=False)
    message_id = serializers.IntegerField(min_value=0, required=False)

    def validate(self, attrs: dict) -> dict:
        value = attrs.get("last_read_message_id", attrs.get("message_id"))
        if value is None:
            raise serializers.ValidationError({"last_read_message_id": ["the id of the newest message read"]})
        return {"message_id": value}


class UserSerializer(serializers.Serializer):
    """A user as the directory shows them: the name only (no e-mail, no activity)."""

    username = serializers.CharField()
