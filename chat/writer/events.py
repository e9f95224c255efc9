"""What goes into the writer (``MessageWrite``) and what comes out (typed events), plus its refusals."""

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


@dataclass(frozen=True)
class MessageStored:
    """A new message committed: ``message`` is its JSON shape; ``seq`` its id, ``prev`` the room's id before it."""

    message: dict[str, Any]
    room_slug: str
    seq: int
    prev: int
    #: The other members of a direct-message room (their /user/queue/dm); empty for group rooms.
    direct_recipient_ids: tuple[int, ...] = ()

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

    @property
    def created(self) -> bool:
        return False


@dataclass(frozen=True)
class NotificationsCreated:
    """Notifications committed with the messages that caused them, to publish to their streams."""

    events: tuple[StreamEvent, ...]


WriteEvent = MessageStored | MessageRepeated | NotificationsCreated


class WriterBusy(ChatError):
    """The writer's queue is full: the SEND is refused at once rather than waiting without end."""

    status = 503
    code = "server-busy"


class WriteFailed(ChatError):
    """The database failed the whole batch: nothing of it was stored, the client may retry."""

    status = 503
    code = "write-failed"
