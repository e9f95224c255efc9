"""One batch of chat messages stored in one transaction (sync: runs in the writer's thread).

The rooms of the batch are locked first, in pk order (two writers in two processes then never
deadlock, and a room's messages take their ids and commit in the same order, so ``since-id`` resume and
the sequencer's ``prev`` stay exact). Under those locks: private-room membership is checked, authors
of public rooms join them, repeated client_ids (in the database or earlier in the batch) are found, the
new rows go in with one multi-row INSERT (and into the search index), and the notifications they cause are
written in the same transaction. What happened comes back as typed events, one list per unit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from attachments.services import AttachConflict, attachments_attach, attachments_by_message
from chat.api.serializers import message_json
from chat.exceptions import ChatError, InvalidInput, NotFound
from chat.models import Membership, Message, Room
from chat.writer.events import MessageRepeated, MessageStored, MessageWrite, NotificationsCreated, WriteEvent
from search.indexing import index_messages

logger = logging.getLogger(__name__)

#: Failures of single rows (a constraint): only their unit is refused, the rest of the batch is redone.
ROW_ERRORS = (IntegrityError, DataError)

Unit = Sequence[MessageWrite]  # stored all or none: one SEND, or a whole STOMP transaction


@dataclass(frozen=True)
class UnitResult:
    """What a unit of the batch became: its events (in the unit's order), or the error that refused it."""

    events: tuple[WriteEvent, ...] = ()
    error: ChatError | None = None


def messages_store(*, units: Sequence[Unit]) -> list[UnitResult]:
    """Store every unit in one transaction; returns one result per unit, in order.

    A unit whose row breaks a constraint is refused alone (the batch is redone with a savepoint per
    unit); any other database error propagates and nothing of the batch is stored.
    """
    try:
        with transaction.atomic():
            rooms = _lock_rooms(units)
            return _store_units(units, rooms)
    except ROW_ERRORS as exc:
        if len(units) == 1:
            return [UnitResult(error=_row_error(exc))]
        logger.warning("a chat write batch of %d units hit %s; storing unit by unit", len(units), type(exc).__name__)
    results: list[UnitResult] = []
    with transaction.atomic():
        rooms = _lock_rooms(units)
        for unit in units:
            try:
                with transaction.atomic():
                    results.extend(_store_units([unit], rooms))
            except ROW_ERRORS as exc:
                results.append(UnitResult(error=_row_error(exc)))
    return results


def _row_error(exc: Exception) -> ChatError:
    if isinstance(exc, AttachConflict):  # an upload taken meanwhile: say so, not "a constraint failed"
        return exc.error
    logger.info("a chat message was refused by the database: %s", exc)
    return InvalidInput("the database refused this message (a constraint failed); it was not stored")


def _lock_rooms(units: Sequence[Unit]) -> dict[int, Room]:
    """Lock the batch's rooms in pk order (FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE BEGIN locks all)."""
    ids = sorted({write.room.pk for unit in units for write in unit})
    return {room.pk: room for room in Room.objects.select_for_update().filter(pk__in=ids).order_by("pk")}


def _store_units(units: Sequence[Unit], rooms: dict[int, Room]) -> list[UnitResult]:
    """Store the units (all inside the caller's transaction, rooms locked); raises ROW_ERRORS on a constraint."""
    errors: dict[int, ChatError] = {}
    members, repeated_ids, last_ids = _batch_state(units)
    joins: dict[tuple[int, int], Membership] = {}
    for index, unit in enumerate(units):
        for write in unit:
            room = rooms.get(write.room.pk)
            if room is None or (room.is_private and (room.pk, write.author.pk) not in members):
                errors[index] = NotFound(f"no room {write.room.slug!r} that you can see")
                break
            if (room.pk, write.author.pk) not in members:  # a public room is joined by its first message
                joins[(room.pk, write.author.pk)] = Membership(room_id=room.pk, user_id=write.author.pk)
    live = [(index, unit) for index, unit in enumerate(units) if index not in errors]
    if joins:
        needed = {key for index, unit in live for key in ((w.room.pk, w.author.pk) for w in unit)}
        Membership.objects.bulk_create([m for key, m in joins.items() if key in needed], ignore_conflicts=True)

    existing = _stored_client_ids([w for _, unit in live for w in unit], rooms, repeated_ids)
    new: list[Message] = []
    plan: list[tuple[int, MessageWrite, Message, bool]] = []  # (unit index, write, message, created)
    in_batch: dict[tuple[int, int, str], Message] = {}
    for index, unit in live:
        for write in unit:
            key = (write.room.pk, write.author.pk, write.client_id) if write.client_id else None
            message = existing.get(key) if key else None
            if message is None and key:
                message = in_batch.get(key)
            if message is not None:
                plan.append((index, write, message, False))
                continue
            room = rooms[write.room.pk]
            message = Message(room=room, author=write.author, body=write.body, client_id=write.client_id)
            if key:
                in_batch[key] = message
            new.append(message)
            plan.append((index, write, message, True))

    if new:
        _insert(new)
        index_messages(new)  # the search index, in this transaction: no message is ever stored unindexed
    # Uploads are bound in this transaction: a refused unit (savepoint rolled back) binds none of them.
    carrying = [message.pk for _, write, message, created in plan if created and write.attachments]
    for _, write, message, created in plan:
        if created and write.attachments:
            attachments_attach(message=message, ids=write.attachments)
    repeats = [message.pk for _, _, message, created in plan if not created]
    attached = attachments_by_message([*carrying, *repeats])
    prev_of: dict[int, int] = {}
    for message in new:  # ids ascend in insertion order, and every room is locked: chain each room's ids
        prev_of[message.pk] = last_ids.get(message.room_id) or 0
        last_ids[message.room_id] = message.pk
    for message in existing.values():
        prev_of[message.pk] = _previous_id(message)

    direct_members = _direct_members({m.room_id for m in new if m.room.is_direct})
    from notifications.services import notifications_for_messages, stream_events

    notifications = notifications_for_messages(messages=new, direct_members=direct_members)
    by_message: dict[int, list] = {}
    for notification in notifications:
        by_message.setdefault(notification.payload["message_id"], []).append(notification)

    events: dict[int, list[WriteEvent]] = {index: [] for index, _ in live}
    for index, _write, message, created in plan:
        payload = message_json(message, attached.get(message.pk, []))
        slug = message.room.slug
        if created:
            others = tuple(uid for uid in direct_members.get(message.room_id, ()) if uid != message.author_id)
            events[index].append(MessageStored(payload, slug, message.pk, prev_of[message.pk], others))
            caused = by_message.pop(message.pk, None)
            if caused:
                events[index].append(NotificationsCreated(stream_events(caused)))
        else:
            events[index].append(MessageRepeated(payload, slug, message.pk, prev_of.get(message.pk, 0)))
    return [
        UnitResult(error=errors[index]) if index in errors else UnitResult(events=tuple(events[index]))
        for index in range(len(units))
    ]


def _stored_client_ids(
    writes: Sequence[MessageWrite], rooms: dict[int, Room], ids: set[int]
) -> dict[tuple[int, int, str], Message]:
    """The stored messages (among ``ids``, from ``_batch_state``) whose (room, author, client_id) one of
    ``writes`` repeats."""
    keyed = [w for w in writes if w.client_id]
    if not keyed or not ids:
        return {}
    authors = {w.author.pk: w.author for w in keyed}
    wanted = {(w.room.pk, w.author.pk, w.client_id) for w in keyed}
    found: dict[tuple[int, int, str], Message] = {}
    rows = Message.objects.filter(pk__in=ids).only("id", "room_id", "author_id", "body", "created", "client_id")
    for message in rows:
        key = (message.room_id, message.author_id, message.client_id)
        if key in wanted:
            message.room = rooms[message.room_id]
            message.author = authors[message.author_id]
            found[key] = message  # type: ignore[index]
    return found


def _insert(messages: Sequence[Message]) -> None:
    """One multi-row ``INSERT … RETURNING id`` per ``_ROWS_PER_INSERT`` messages; sets each one's id and
    ``created`` (one timestamp for the batch). What ``bulk_create`` does, without compiling every value
    through the ORM (a third of the writer's time in a 200-message batch)."""
    now = timezone.now()
    quote = connection.ops.quote_name
    columns = ("room_id", "author_id", "body", "created", "client_id")
    head = f"INSERT INTO {quote(Message._meta.db_table)} ({', '.join(quote(c) for c in columns)}) VALUES "  # noqa: S608 - quoted identifiers; values are parameters
    created = connection.ops.adapt_datetimefield_value(now)
    for start in range(0, len(messages), _ROWS_PER_INSERT):
        chunk = messages[start : start + _ROWS_PER_INSERT]
        params: list = []
        for message in chunk:
            params += (message.room_id, message.author_id, message.body, created, message.client_id)
        sql = head + ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk)) + f" RETURNING {quote('id')}"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            ids = [row[0] for row in cursor.fetchall()]
        if len(ids) != len(chunk):
            raise RuntimeError("this database cannot return ids from a multi-row INSERT (SQLite >= 3.35 can)")
        for message, pk in zip(chunk, ids, strict=True):  # RETURNING lists the rows in VALUES order
            message.pk = pk
            message.created = now
            message._state.adding = False
            message._state.db = connection.alias


_ROWS_PER_INSERT = 500  # 2,500 parameters per statement at most


def _batch_state(units: Sequence[Unit]) -> tuple[set[tuple[int, int]], set[int], dict[int, int]]:
    """What the batch needs to know, read under the room locks in ONE round trip (usually): the (room, user)
    memberships of its authors, the ids of stored messages with one of its (room, author, client_id), and
    each room's newest message id before the batch. One statement of ``UNION ALL``ed parts, every value a
    parameter: on a busy machine every round trip to PostgreSQL waits for its backend to be scheduled.

    - memberships: ``room IN (…) AND user IN (…)``;
    - repeats: an OR of exact triples, each one lookup in the unique (author, room, client_id) index (the
      ORM's three IN lists made SQLite probe their cross product: ~6 ms for 200 messages against ~0.4 ms);
    - newest ids: ``MAX(id)`` per room, one step down the (room, id) index on both databases.
    """
    writes = [w for unit in units for w in unit]
    if not writes:
        return set(), set(), {}
    room_ids = sorted({w.room.pk for w in writes})
    author_ids = sorted({w.author.pk for w in writes})
    keys = sorted({(w.room.pk, w.author.pk, w.client_id) for w in writes if w.client_id})
    q = connection.ops.quote_name
    message, membership = q(Message._meta.db_table), q(Membership._meta.db_table)
    room, user, author, client_id, pk = q("room_id"), q("user_id"), q("author_id"), q("client_id"), q("id")
    # Only quoted identifiers and placeholders are formatted into the SQL below (noqa: S608).
    parts: list[tuple[str, list]] = []  # (SELECT kind, a, b, its parameters)
    rooms_in, authors_in = ", ".join(["%s"] * len(room_ids)), ", ".join(["%s"] * len(author_ids))
    sql = f"SELECT 0, {room}, {user} FROM {membership} WHERE {room} IN ({rooms_in}) AND {user} IN ({authors_in})"  # noqa: S608
    parts.append((sql, [*room_ids, *author_ids]))
    term = f"({author} = %s AND {room} = %s AND {client_id} = %s)"
    for start in range(0, len(keys), _KEYS_PER_PART):
        chunk = keys[start : start + _KEYS_PER_PART]
        sql = f"SELECT 1, {pk}, NULL FROM {message} WHERE " + " OR ".join([term] * len(chunk))  # noqa: S608
        parts.append((sql, [v for r, a, c in chunk for v in (a, r, c)]))
    newest = f"SELECT 2, CAST(%s AS INTEGER), (SELECT MAX({pk}) FROM {message} WHERE {room} = %s)"  # noqa: S608
    parts.extend((newest, [room_id, room_id]) for room_id in room_ids)
    members: set[tuple[int, int]] = set()
    repeated: set[int] = set()
    last_ids: dict[int, int] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(parts), _PARTS_PER_QUERY):  # SQLite allows 500 SELECTs in one UNION
            chunk_parts = parts[start : start + _PARTS_PER_QUERY]
            union = " UNION ALL ".join(part for part, _ in chunk_parts)
            cursor.execute(union, [v for _, params in chunk_parts for v in params])
            for kind, a, b in cursor.fetchall():
                if kind == 0:
                    members.add((a, b))
                elif kind == 1:
                    repeated.add(a)
                elif b is not None:
                    last_ids[a] = b
    return members, repeated, last_ids


_KEYS_PER_PART = 300  # parameters per statement stay far below every backend's limit
_PARTS_PER_QUERY = 400


def _previous_id(message: Message) -> int:
    previous = Message.objects.filter(room_id=message.room_id, id__lt=message.pk).order_by("-id")
    return previous.values_list("id", flat=True).first() or 0


def _direct_members(room_ids: set[int]) -> dict[int, list[int]]:
    members: dict[int, list[int]] = {}
    if room_ids:
        for room_id, user_id in Membership.objects.filter(room_id__in=room_ids).values_list("room_id", "user_id"):
            members.setdefault(room_id, []).append(user_id)
    return members
