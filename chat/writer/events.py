"""What goes into the writer (``MessageWrite`` and the changes of stored messages) and what comes out
(typed events), plus its refusals.

Every event of a room carries ``event_seq``: the room's event number, given by the batch in the
transaction of the change (``chat.models.RoomEvent``); rooms publish in that sequence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chat.exceptions import ChatError

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from chat.models import Room
    from notifications.publishing import StreamEvent


@dataclass(frozen=True)
class MessageWrite:
    """A validated chat message, ready to join a batch (``chat.services.message_prepare`` makes them)."""

    room: Room
    author: User
    body: str
    client_id: str | None = None
    #: Upload ids (attachments/) the message carries, checked by ``message_prepare``, bound by the batch.
    attachments: tuple[int, ...] = ()
    #: The id of the message of the same room this one replies to (checked by the batch under the lock).
    reply_to: int | None = None


@dataclass(frozen=True)
class MessageEditWrite:
    """Replace the text of message ``message_id`` (its author only); ``author`` is who asks."""

    room: Room
    author: User
    message_id: int
    body: str
    client_id: None = None  # never de-duplicated: an edit repeated is a second edit to the same text
    attachments: tuple[int, ...] = ()


@dataclass(frozen=True)
class MessageDeleteWrite:
    """Turn message ``message_id`` into a tombstone (its author, or the room's owner; or staff in the admin)."""

    room: Room
    author: User
    message_id: int
    client_id: None = None
    attachments: tuple[int, ...] = ()
    #: Asked by staff in the admin: neither author nor member needed.
    by_staff: bool = False


@dataclass(frozen=True)
class ReactionWrite:
    """Toggle ``author``'s ``emoji`` (one validated emoji grapheme) on message ``message_id``."""

    room: Room
    author: User
    message_id: int
    emoji: str
    client_id: None = None
    attachments: tuple[int, ...] = ()


ChangeWrite = MessageEditWrite | MessageDeleteWrite | ReactionWrite
Write = MessageWrite | ChangeWrite


@dataclass(frozen=True)
class MessageStored:
    """A new message committed: ``message`` is its JSON shape; ``seq`` its id, ``prev`` the room's id before
    it (the message chain), ``event_seq`` its number in the room's event stream (what rooms publish by)."""

    message: dict[str, Any]
    room_slug: str
    seq: int
    prev: int
    #: The other members of a direct-message room (their /user/queue/dm); empty for group rooms.
    direct_recipient_ids: tuple[int, ...] = ()
    event_seq: int = 0

    @property
    def created(self) -> bool:
        return True


@dataclass(frozen=True)
class MessageRepeated:
    """A client_id already stored (earlier, or earlier in the same batch): nothing new, re-announced as is."""

    message: dict[str, Any]
    room_slug: str
    seq: int
    prev: int
    #: The event number of its creation (0 for a message older than the event stream: sent unsequenced).
    event_seq: int = 0

    @property
    def created(self) -> bool:
        return False


@dataclass(frozen=True)
class MessageChanged:
    """A stored message edited, deleted or reacted to, committed as event ``event_seq`` of its room.

    ``event``: ``edit`` | ``delete`` | ``reaction`` (the STOMP ``event`` header); ``body``: the full message
    JSON for an edit or delete, ``{"id", "reactions"}`` for a reaction.
    """

    event: str
    body: dict[str, Any]
    room_slug: str
    message_id: int
    event_seq: int

    @property
    def created(self) -> bool:
        return False


@dataclass(frozen=True)
class NotificationsCreated:
    """Notifications committed with the messages that caused them, to publish to their streams."""

    events: tuple[StreamEvent, ...]


WriteEvent = MessageStored | MessageRepeated | MessageChanged | NotificationsCreated


class WriterBusy(ChatError):
    """The writer's queue is full: the SEND is refused at once rather than waiting without end."""

    status = 503
    code = "server-busy"


class WriteFailed(ChatError):
    """The database failed the whole batch: nothing of it was stored, the client may retry."""

    status = 503
    code = "write-failed"
