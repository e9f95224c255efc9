"""Edits, deletes and reactions inside a write batch (sync: the writer's thread, rooms locked).

``BatchChanges`` reads what the batch's changes and replies need in a few queries (the messages they
name, their reactions, the texts they had), checks each unit in order against that state (a refused
unit leaves it as it was), then writes the net result: the edit history, the new texts, the tombstones,
the reactions added and removed, the search index. The caller numbers the room events and publishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db.models import Q
from django.utils import timezone

from attachments.services import attachments_delete_for_message
from chat.exceptions import ChatError, InvalidInput, NotAllowed, NotFound
from chat.models import Message, MessageEdit, Reaction, Room
from chat.writer.events import MessageDeleteWrite, MessageEditWrite, MessageWrite, ReactionWrite
from notifications.services import mentioned_names
from search.indexing import index_messages, search_remove

#: Distinct emoji one message may carry (issue 20).
REACTIONS_MAX = 20

ReactionKey = tuple[int, str, str]  # (user id, username, emoji)


@dataclass
class _State:
    """One message as the batch sees it: its current fields and reactions, and what it had before."""

    message: Message
    reactions: list[ReactionKey]
    initial_reactions: set[tuple[int, str]] = field(default_factory=set)
    texts: list[str] = field(default_factory=list)  # every text it had (history, then current)
    history: list[MessageEdit] = field(default_factory=list)  # edit rows to add
    changed: bool = False


class BatchChanges:
    """The changes of one batch (see the module docstring)."""

    def __init__(self, writes: Sequence[object]) -> None:
        changes = [w for w in writes if isinstance(w, MessageEditWrite | MessageDeleteWrite | ReactionWrite)]
        parents = {w.reply_to for w in writes if isinstance(w, MessageWrite) and w.reply_to}
        targets = {w.message_id for w in changes}
        self.now = timezone.now()
        self.messages: dict[int, Message] = {}
        self.states: dict[int, _State] = {}
        self.applied: dict[int, tuple[str, int]] = {}  # id(write) -> (event kind, message id)
        ids = targets | parents
        if not ids:
            return
        rows = Message.objects.select_related("author", "reply_to__author").filter(pk__in=ids)
        self.messages = {m.pk: m for m in rows}
        targets &= self.messages.keys()
        if not targets:
            return
        self.states = {pk: _State(self.messages[pk], []) for pk in targets}
        reactions = Reaction.objects.filter(message_id__in=targets).order_by("id")
        for message_id, user_id, username, emoji in reactions.values_list(
            "message_id", "user_id", "user__username", "emoji"
        ):
            self.states[message_id].reactions.append((user_id, username, emoji))
            self.states[message_id].initial_reactions.add((user_id, emoji))
        edited = {w.message_id for w in changes if isinstance(w, MessageEditWrite)} & targets
        if edited:  # the texts they had: an edit notifies only names none of them mentioned
            for message_id, body in MessageEdit.objects.filter(message_id__in=edited).values_list("message_id", "body"):
                self.states[message_id].texts.append(body)
        for state in self.states.values():
            state.texts.append(state.message.body)

    # -- checking, unit by unit -------------------------------------------------------------------------------
    def parent(self, write: MessageWrite) -> Message | None:
        """The message ``write`` replies to, or NotFound when the room has no such message."""
        if not write.reply_to:
            return None
        parent = self.messages.get(write.reply_to)
        if parent is None or parent.room_id != write.room.pk:
            raise NotFound(f"no message {write.reply_to} in this room to reply to")
        return parent

    def check_unit(self, unit: Sequence[object], owners: set[tuple[int, int]]) -> None:
        """Apply the unit's changes to the batch's state, all or none (raises the ChatError refusing it)."""
        saved = {
            pk: (s.message.body, s.message.edited, s.message.deleted, list(s.reactions), list(s.texts), list(s.history))
            for pk, s in self.states.items()
            if any(getattr(w, "message_id", None) == pk for w in unit)
        }
        try:
            for write in unit:
                if isinstance(write, MessageWrite):
                    self.parent(write)
                elif isinstance(write, MessageEditWrite | MessageDeleteWrite | ReactionWrite):
                    self._check(write, owners)
        except ChatError:
            for pk, (body, edited, deleted, reactions, texts, history) in saved.items():
                state = self.states[pk]
                state.message.body, state.message.edited, state.message.deleted = body, edited, deleted
                state.reactions, state.texts, state.history = reactions, texts, history
            for write in unit:
                self.applied.pop(id(write), None)
            raise

    def _check(
        self, write: MessageEditWrite | MessageDeleteWrite | ReactionWrite, owners: set[tuple[int, int]]
    ) -> None:
        state = self.states.get(write.message_id)
        if state is None or state.message.room_id != write.room.pk:
            raise NotFound(f"no message {write.message_id} in this room")
        message, actor = state.message, write.author.pk
        if isinstance(write, MessageEditWrite):
            if message.author_id != actor:
                raise NotAllowed("only its author can edit a message")
            if message.deleted:
                raise InvalidInput(f"message {message.pk} is deleted: it cannot be edited")
            state.history.append(MessageEdit(message_id=message.pk, body=message.body, replaced=self.now))
            message.body, message.edited = write.body, self.now
            state.texts.append(write.body)
            kind = "edited"
        elif isinstance(write, MessageDeleteWrite):
            if message.author_id != actor and (write.room.pk, actor) not in owners and not write.by_staff:
                raise NotAllowed("only its author or the room's owner can delete a message")
            if message.deleted:
                raise InvalidInput(f"message {message.pk} is deleted already")
            message.deleted, message.body = True, ""
            state.reactions, state.history = [], []
            kind = "deleted"
        else:
            if message.deleted:
                raise InvalidInput(f"message {message.pk} is deleted: it takes no reactions")
            mine = (actor, write.author.get_username(), write.emoji)
            if mine in state.reactions:
                state.reactions.remove(mine)
            else:
                if write.emoji not in {e for _, _, e in state.reactions} and (
                    len({e for _, _, e in state.reactions}) >= REACTIONS_MAX
                ):
                    raise InvalidInput(f"a message carries at most {REACTIONS_MAX} different reactions")
                state.reactions.append(mine)
            kind = "reaction"
        state.changed = True
        self.applied[id(write)] = (kind, message.pk)

    # -- writing ----------------------------------------------------------------------------------------------
    def store(self) -> None:
        """Write the net result of every unit checked (inside the batch's transaction)."""
        changed = [s for s in self.states.values() if s.changed]
        if not changed:
            return
        deleted = [s.message for s in changed if s.message.deleted]
        edited = [s.message for s in changed if not s.message.deleted and s.history]
        history = [row for s in changed if not s.message.deleted for row in s.history]
        if history:
            MessageEdit.objects.bulk_create(history)
        for message in [*edited, *deleted]:
            Message.objects.filter(pk=message.pk).update(
                body=message.body, edited=message.edited, deleted=message.deleted
            )
        if deleted:
            ids = [m.pk for m in deleted]
            MessageEdit.objects.filter(message_id__in=ids).delete()
            for message in deleted:
                attachments_delete_for_message(message=message)
            search_remove(ids, using=deleted[0]._state.db or "default")
        if edited:
            index_messages(edited)  # replaces each one's row: search finds the new text only
        added: list[Reaction] = []
        removed = Q(pk__in=[])
        for state in changed:
            final = {(user_id, emoji) for user_id, _, emoji in state.reactions}
            for user_id, emoji in state.initial_reactions - final:
                removed |= Q(message_id=state.message.pk, user_id=user_id, emoji=emoji)
            added.extend(
                Reaction(message_id=state.message.pk, user_id=user_id, emoji=emoji, created=self.now)
                for user_id, _, emoji in state.reactions
                if (user_id, emoji) not in state.initial_reactions
            )
            state.initial_reactions = final
        if removed.children:
            Reaction.objects.filter(removed).delete()
        if added:
            Reaction.objects.bulk_create(added)

    def new_mentions(self) -> tuple[list[Message], dict[int, set[str]]]:
        """The edited messages of group rooms and, for each, the names its earlier texts mentioned already."""
        messages: list[Message] = []
        before: dict[int, set[str]] = {}
        for state in self.states.values():
            message = state.message
            if not state.history or message.deleted or message.room.is_direct:
                continue
            messages.append(message)
            before[message.pk] = {n.lower() for text in state.texts[:-1] for n in mentioned_names(text)}
        return messages, before

    def reactions_of(self, message_id: int) -> list[tuple[str, str]]:
        """(username, emoji) pairs of a changed message, in order, for its JSON."""
        return [(username, emoji) for _, username, emoji in self.states[message_id].reactions]

    def bind_rooms(self, rooms: dict[int, Room]) -> None:
        """Give the loaded messages the batch's locked Room objects (their JSON reads the slug)."""
        for message in self.messages.values():
            room = rooms.get(message.room_id)
            if room is not None:
                message.room = room
