"""The chat write pipeline: one writer per process (per event loop) storing messages in batches.

Edits, deletes and reactions (``MessageEditWrite``, ``MessageDeleteWrite``, ``ReactionWrite``) take the
same path and the same batches, so every change of a room is numbered in one order (``RoomEvent``).

A SEND (STOMP ``/app/rooms.*``, ``/app/dm.*``, REST ``POST …/messages/``) is validated first
(``chat.services.message_prepare``), then handed to the writer (``get_writer().submit``). The writer
collects what arrives within ``CHAT_WRITE_WINDOW_MS`` (or ``CHAT_WRITE_BATCH_MAX`` messages, whichever
comes first), stores the batch in one transaction in a worker thread, or in a process of its own with
``CHAT_WRITER_PROCESS`` (``process.py``) (``store.messages_store``: rooms
locked in pk order, client_ids de-duplicated, one multi-row INSERT, the notifications the messages cause
in the same transaction), then publishes what happened on the event loop (``chat.publishing``) and only
then answers each caller: a RECEIPT still means "in the database", and nothing is announced before its
commit.
"""

from chat.writer.events import (
    MessageChanged,
    MessageDeleteWrite,
    MessageEditWrite,
    MessageRepeated,
    MessageStored,
    MessageWrite,
    NotificationsCreated,
    ReactionWrite,
    WriteEvent,
    WriteFailed,
    WriterBusy,
)
from chat.writer.writer import ChatWriter, get_writer

__all__ = [
    "ChatWriter",
    "MessageChanged",
    "MessageDeleteWrite",
    "MessageEditWrite",
    "MessageRepeated",
    "MessageStored",
    "MessageWrite",
    "NotificationsCreated",
    "ReactionWrite",
    "WriteEvent",
    "WriteFailed",
    "WriterBusy",
    "get_writer",
]
