"""Keeping the index in step with the messages: the writer indexes each batch in its own transaction.

- ``index_messages(messages)``: called by chat/writer/store.py right after the batch's INSERT, inside the
  batch's transaction, so a message is searchable exactly when it is committed and never without its index
  row (a rolled-back batch rolls back both).
- ``search_reindex(message)``: after a message's body changes (issue 20's edits must call it in the edit's
  transaction).
- ``search_remove(message_ids)``: after messages are deleted. The migrations also install delete triggers on
  chat_message (row DELETEs, and TRUNCATE on PostgreSQL), so a cascade from a deleted room or user leaves no
  stale row behind even where no code calls this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import router

from search.backends import backend

if TYPE_CHECKING:
    from chat.models import Message


def index_messages(messages: Sequence[Message]) -> None:
    """Index freshly stored messages (they have ids); a no-op with ``SEARCH_INDEX_ON_WRITE`` off."""
    if messages and settings.SEARCH_INDEX_ON_WRITE:
        using = messages[0]._state.db or router.db_for_write(type(messages[0]))
        backend(using).index_rows([(m.pk, m.room_id, m.body) for m in messages])


def search_reindex(message: Message) -> None:
    """Index ``message``'s current body again (replaces its row)."""
    backend(router.db_for_write(type(message))).index_rows([(message.pk, message.room_id, message.body)])


def search_remove(message_ids: Sequence[int], *, using: str = "default") -> None:
    """Forget these messages (idempotent: the delete triggers may have done it already)."""
    if message_ids:
        backend(using).remove(list(message_ids))


def search_rebuild(*, using: str = "default") -> int:
    """Index every stored message from scratch; returns how many."""
    return backend(using).rebuild()
