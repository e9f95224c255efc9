"""One batch of chat messages stored in one transaction (sync: runs in the writer's thread).

The rooms of the batch are locked first, in pk order (two writers in two processes then never
deadlock, and a room's messages take their ids and commit in the same order, so ``since-id`` resume and
the sequencer's ``prev`` stay exact). Under those locks: private-room membership is checked, authors
of public rooms join them, repeated client_ids (in the database or earlier in the batch) are found, the
new rows go in with one multi-row INSERT (and into the search index), edits, deletes and reactions are
checked and written (chat/writer/changes.py), every change gets the room's next event number (one more
multi-row INSERT of ``RoomEvent``), and the notifications they cause are written in the same transaction.
What happened comes back as typed events, one list per unit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import DataError, IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from attachments.services import AttachConflict, attachments_attach, attachments_by_message
from chat.api.serializers import message_json, reactions_json
from chat.exceptions import ChatError, InvalidInput, NotAllowed, NotFound
from chat.models import Membership, Message, Reaction, Room, RoomEvent
from chat.writer.changes import BatchChanges
from chat.writer.events import (
    MessageChanged,
    MessageRepeated,
    MessageStored,
    MessageWrite,
    NotificationsCreated,
    Write,
    WriteEvent,
)
from chatproject.dbcursors import array_cursor, json_rows
from operations import metrics
from search.indexing import index_messages

logger = logging.getLogger(__name__)

#: Failures of single rows (a constraint): only their unit is refused, the rest of the batch is redone.
ROW_ERRORS = (IntegrityError, DataError)

Unit = Sequence[Write]  # stored all or none: one SEND, or a whole STOMP transaction


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
        started = metrics.now()
        with _pipelined(), transaction.atomic():
            start = _batch_start(units)
            locked = metrics.now()
            results = _store_units(units, start)
            built = metrics.now()
        metrics.writer_phases(locked - started, built - locked, metrics.now() - built)
        return results
    except ROW_ERRORS as exc:
        if len(units) == 1:
            return [UnitResult(error=_row_error(exc))]
        logger.warning("a chat write batch of %d units hit %s; storing unit by unit", len(units), type(exc).__name__)
    results: list[UnitResult] = []
    with transaction.atomic():
        rooms = _batch_start(units).rooms
        for unit in units:
            try:
                with transaction.atomic():
                    results.extend(_store_units([unit], _batch_start([unit], locked=rooms)))
            except ROW_ERRORS as exc:
                results.append(UnitResult(error=_row_error(exc)))
    return results


def _pipelined() -> contextlib.AbstractContextManager[object]:
    """On PostgreSQL, psycopg's pipeline mode for the batch: statements whose results the batch does not read
    (BEGIN, the search index, the room events, the COMMIT) go out with the next one instead of each waiting for
    its own round trip; a statement that returns rows still waits for them (``fetchall`` syncs). A batch of new
    messages costs two round trips (``_batch_start``): on a busy machine each one waits for PostgreSQL's backend
    and then for this thread to be scheduled again. An error of a pipelined statement surfaces at the next
    sync, at the latest the COMMIT, inside the same ``atomic`` (same handling). So is a statement's row count
    (what the ORM's ``update()`` returns): never decide on it inside the batch, count with a query, which syncs
    (``attachments_attach``).

    The batch's statements are prepared on their connection at first use (their text is constant; only the
    server-binding cursors of ``_array_cursor`` prepare, Django's own never do). Django leaves psycopg's
    preparing off (for connection poolers that drop prepared statements; this project's pool is psycopg's own,
    in process): parsing them again took about a quarter of PostgreSQL's CPU for a one-message batch. PostgreSQL
    still plans each execution for its arrays' values unless a generic plan costs no more (``plan_cache_mode``
    auto): a generic plan forced on a table that then grew kept scanning it whole (tried: 51 ms batches).
    """
    if connection.vendor != "postgresql":
        return contextlib.nullcontext()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = 0
    return raw.pipeline()


def _array_cursor() -> CursorWrapper:
    """The batch's cursor for statements of array parameters (bound on the server on PostgreSQL)."""
    return array_cursor(connection)


def _row_error(exc: Exception) -> ChatError:
    if isinstance(exc, AttachConflict):  # an upload taken meanwhile: say so, not "a constraint failed"
        return exc.error
    logger.info("a chat message was refused by the database: %s", exc)
    return InvalidInput("the database refused this message (a constraint failed); it was not stored")


@dataclass
class _Start:
    """What a batch reads under its room locks before it writes (``_batch_start``); the fields from ``members``
    to ``last_seqs`` are ``_batch_state``'s, in its order."""

    rooms: dict[int, Room]  # locked, fresh
    members: set[tuple[int, int]]  # (room, user)
    repeated_ids: set[int]  # stored messages with one of the batch's (room, author, client_id)
    last_ids: dict[int, int]  # room -> its newest message id before the batch
    owners: set[tuple[int, int]]
    last_seqs: dict[int, int]  # room -> its newest event number before the batch
    new_ids: list[int] | None  # PostgreSQL: ids taken under the locks for the batch's new messages, ascending


def _batch_start(units: Sequence[Unit], *, locked: dict[int, Room] | None = None) -> _Start:
    """Lock the batch's rooms in pk order (FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE BEGIN locks all), then
    read the batch's state (``_batch_state``) and, on PostgreSQL, take ids for its new messages.

    On PostgreSQL the three statements go out together in the batch's pipeline and come back in one round
    trip: PostgreSQL runs them in order, so the state is read (each statement its own snapshot) and the ids
    are taken only once every lock is held. Ids taken under the room locks still commit in order per room,
    and the INSERT that uses them needs no answer, so it goes out with the COMMIT: a batch of new messages
    costs two round trips instead of four. A refused or repeated message leaves its id unused (a sequence
    has gaps anyway). ``locked``: the rooms, locked already (the unit-by-unit retry).
    """
    room_ids = sorted({write.room.pk for unit in units for write in unit})
    fields = list(Room._meta.concrete_fields)
    postgres = connection.vendor == "postgresql"
    with contextlib.ExitStack() as cursors:
        lock = None
        if locked is None and not room_ids:
            locked = {}
        elif locked is None:
            lock = cursors.enter_context(_array_cursor())
            q = connection.ops.quote_name
            columns = ", ".join(q(f.column) for f in fields)
            # Only quoted identifiers and placeholders are formatted into these statements (noqa: S608).
            head = f"SELECT {columns} FROM {q(Room._meta.db_table)} WHERE {q('id')}"  # noqa: S608
            if postgres:
                lock.execute(f"{head} = ANY(%s::bigint[]) ORDER BY {q('id')} FOR UPDATE", [room_ids])
            else:
                lock.execute(f"{head} IN ({', '.join(['%s'] * len(room_ids))}) ORDER BY {q('id')}", room_ids)
        state = _batch_state(units, cursors.enter_context(_array_cursor()))
        ids = None
        wanted = sum(1 for unit in units for write in unit if isinstance(write, MessageWrite))
        if postgres and wanted:
            ids = cursors.enter_context(_array_cursor())
            # The sequence is looked up once (a scalar subquery), not once per id.
            sequence = f"(SELECT pg_get_serial_sequence('{Message._meta.db_table}', 'id')::regclass)"
            ids.execute(f"SELECT nextval({sequence}) FROM generate_series(1, %s)", [wanted])  # noqa: S608 - constants
        if lock is not None:
            names, alias = [f.attname for f in fields], connection.alias
            rows = [Room.from_db(alias, names, row) for row in lock.fetchall()]
            locked = {room.pk: room for room in rows}
        read_state = state()
        new_ids = sorted(row[0] for row in ids.fetchall()) if ids is not None else None
    assert locked is not None
    return _Start(locked, *read_state, new_ids)


def _store_units(units: Sequence[Unit], start: _Start) -> list[UnitResult]:
    """Store the units (all inside the caller's transaction, rooms locked); raises ROW_ERRORS on a constraint."""
    errors: dict[int, ChatError] = {}
    rooms, members, repeated_ids, last_ids = start.rooms, start.members, start.repeated_ids, start.last_ids
    owners, last_seqs = start.owners, start.last_seqs
    joins: dict[tuple[int, int], Membership] = {}
    for index, unit in enumerate(units):
        for write in unit:
            room = rooms.get(write.room.pk)
            if getattr(write, "by_staff", False):  # the admin: no membership needed (checked as staff there)
                continue
            if room is None or (room.is_private and (room.pk, write.author.pk) not in members):
                errors[index] = NotFound(f"no room {write.room.slug!r} that you can see")
                break
            if (room.pk, write.author.pk) not in members:
                if not isinstance(write, MessageWrite):  # reacting, editing, deleting: members only
                    errors[index] = NotAllowed(f"only members of {room.slug!r} can change its messages")
                    break
                joins[(room.pk, write.author.pk)] = Membership(room_id=room.pk, user_id=write.author.pk)
    changes = BatchChanges([w for index, unit in enumerate(units) if index not in errors for w in unit])
    changes.bind_rooms(rooms)
    for index, unit in enumerate(units):
        if index not in errors:
            try:
                changes.check_unit(unit, owners)
            except ChatError as exc:
                errors[index] = exc
    live = [(index, unit) for index, unit in enumerate(units) if index not in errors]
    if joins:
        needed = {key for index, unit in live for key in ((w.room.pk, w.author.pk) for w in unit)}
        Membership.objects.bulk_create([m for key, m in joins.items() if key in needed], ignore_conflicts=True)

    writes = [w for _, unit in live for w in unit if isinstance(w, MessageWrite)]
    existing = _stored_client_ids(writes, rooms, repeated_ids)
    new: list[Message] = []
    plan: list[tuple[int, Write, Message | None, bool]] = []  # (unit index, write, message, created)
    in_batch: dict[tuple[int, int, str], Message] = {}
    for index, unit in live:
        for write in unit:
            if not isinstance(write, MessageWrite):
                plan.append((index, write, None, False))
                continue
            key = (write.room.pk, write.author.pk, write.client_id) if write.client_id else None
            message = existing.get(key) if key else None
            if message is None and key:
                message = in_batch.get(key)
            if message is not None:
                plan.append((index, write, message, False))
                continue
            message = _new_message(rooms[write.room.pk], write, changes.parent(write))
            if key:
                in_batch[key] = message
            new.append(message)
            plan.append((index, write, message, True))

    if new:
        _insert(new, start.new_ids)
        index_messages(new)  # the search index, in this transaction: no message is ever stored unindexed
    changes.store()
    # Uploads are bound in this transaction: a refused unit (savepoint rolled back) binds none of them.
    carrying = [message.pk for _, write, message, created in plan if created and message and write.attachments]
    for _, write, message, created in plan:
        if created and message is not None and write.attachments:
            attachments_attach(message=message, ids=write.attachments)
    repeats = [message.pk for _, _, message, created in plan if message is not None and not created]
    edited = [pk for kind, pk in changes.applied.values() if kind == "edited"]
    attached = attachments_by_message([*carrying, *repeats, *edited])
    repeat_reactions = _reactions_by_message(repeats)
    prev_of: dict[int, int] = {}
    for message in new:  # ids ascend in insertion order, and every room is locked: chain each room's ids
        prev_of[message.pk] = last_ids.get(message.room_id) or 0
        last_ids[message.room_id] = message.pk
    for message in existing.values():
        prev_of[message.pk] = _previous_id(message)

    # The room events, numbered in the order of the units (ids ascend in the same order), one INSERT.
    event_rows: list[tuple[int, int, str, int]] = []  # (room id, seq, kind, message id)
    seq_of: dict[int, int] = {}  # id(write) -> its event's number
    for _, write, message, created in plan:
        if message is not None and not created:
            continue
        kind, message_id = ("created", message.pk) if message is not None else changes.applied[id(write)]
        seq = last_seqs.get(write.room.pk, 0) + 1
        last_seqs[write.room.pk] = seq
        seq_of[id(write)] = seq
        event_rows.append((write.room.pk, seq, kind, message_id))
    _insert_events(event_rows, changes.now)
    repeat_seqs = _creation_seqs(repeats)

    direct_members = _direct_members({m.room_id for m in new if m.room.is_direct})
    from notifications.services import notifications_for_messages, stream_events

    notifications = notifications_for_messages(messages=new, direct_members=direct_members)
    mentioned, before = changes.new_mentions()
    if mentioned:  # an edit notifies only the names none of the message's earlier texts mentioned
        notifications += notifications_for_messages(messages=mentioned, direct_members={}, exclude_names=before)
    by_message: dict[int, list] = {}
    for notification in notifications:
        by_message.setdefault(notification.payload["message_id"], []).append(notification)

    events: dict[int, list[WriteEvent]] = {index: [] for index, _ in live}
    for index, write, message, created in plan:
        if message is None:
            kind, message_id = changes.applied[id(write)]
            changed = changes.messages[message_id]
            reactions = changes.reactions_of(message_id)
            if kind == "reaction":
                body = {"id": message_id, "reactions": reactions_json(reactions)}
            else:
                body = message_json(changed, attached.get(message_id, []), reactions)
            event = EVENT_NAMES[kind]
            events[index].append(MessageChanged(event, body, changed.room.slug, message_id, seq_of[id(write)]))
            caused = by_message.pop(message_id, None) if kind == "edited" else None
            if caused:
                events[index].append(NotificationsCreated(stream_events(caused)))
            continue
        payload = message_json(message, attached.get(message.pk, []), () if created else repeat_reactions[message.pk])
        slug = message.room.slug
        if created:
            others = tuple(uid for uid in direct_members.get(message.room_id, ()) if uid != message.author_id)
            event_seq = seq_of[id(write)]
            events[index].append(MessageStored(payload, slug, message.pk, prev_of[message.pk], others, event_seq))
            caused = by_message.pop(message.pk, None)
            if caused:
                events[index].append(NotificationsCreated(stream_events(caused)))
        else:
            prev, event_seq = prev_of.get(message.pk, 0), repeat_seqs.get(message.pk, 0)
            events[index].append(MessageRepeated(payload, slug, message.pk, prev, event_seq))
    return [
        UnitResult(error=errors[index]) if index in errors else UnitResult(events=tuple(events[index]))
        for index in range(len(units))
    ]


#: The ``event`` header of each kind of room event (``RoomEvent.kind``).
EVENT_NAMES = {"created": "message", "edited": "edit", "deleted": "delete", "reaction": "reaction"}


def _insert_events(rows: Sequence[tuple[int, int, str, int]], now: datetime) -> None:
    """One multi-row INSERT of the batch's room events (as ``_insert``: no ORM compiling per row)."""
    if not rows:
        return
    quote = connection.ops.quote_name
    columns = ("room_id", "seq", "kind", "message_id", "created")
    table = f"{quote(RoomEvent._meta.db_table)} ({', '.join(quote(c) for c in columns)})"
    head = f"INSERT INTO {table} VALUES "  # noqa: S608 - quoted identifiers; values are parameters
    created = connection.ops.adapt_datetimefield_value(now)
    with _array_cursor() as cursor:
        if connection.vendor == "postgresql":  # one constant statement (see _insert)
            sql = (
                f"INSERT INTO {table} SELECT (e->>0)::bigint, (e->>1)::bigint, e->>2, (e->>3)::bigint, %s "  # noqa: S608 - quoted identifiers; values are parameters
                "FROM json_array_elements(%s::json) AS e"
            )
            cursor.execute(sql, [created, json_rows(rows)])
            return
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start : start + _ROWS_PER_INSERT]
            params = [v for room_id, seq, kind, message_id in chunk for v in (room_id, seq, kind, message_id, created)]
            cursor.execute(head + ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk)), params)


def _reactions_by_message(message_ids: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
    """(username, emoji) pairs of each message, in order, in one query (a repeat re-announces them)."""
    found: dict[int, list[tuple[str, str]]] = {pk: [] for pk in message_ids}
    if message_ids:
        rows = Reaction.objects.filter(message_id__in=message_ids).order_by("id")
        for message_id, username, emoji in rows.values_list("message_id", "user__username", "emoji"):
            found[message_id].append((username, emoji))
    return found


def _creation_seqs(message_ids: Sequence[int]) -> dict[int, int]:
    """The event number of each message's creation (a repeat is re-announced under it)."""
    if not message_ids:
        return {}
    rows = RoomEvent.objects.filter(message_id__in=message_ids, kind=RoomEvent.Kind.CREATED)
    return dict(rows.values_list("message_id", "seq"))


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
    rows = Message.objects.filter(pk__in=ids).select_related("reply_to__author")
    for message in rows:
        key = (message.room_id, message.author_id, message.client_id)
        if key in wanted:
            message.room = rooms[message.room_id]
            message.author = authors[message.author_id]
            found[key] = message  # type: ignore[index]
    return found


def _insert(messages: Sequence[Message], ids: Sequence[int] | None) -> None:
    """Insert the batch's new messages and set each one's id and ``created`` (one timestamp for the batch).
    What ``bulk_create`` does, without compiling every value through the ORM (a third of the writer's time in
    a 200-message batch).

    PostgreSQL: with ``ids`` (taken under the room locks, ascending, at least one per message) in ONE
    statement that waits for no answer: it goes out with the batch's next statements. Elsewhere: one
    multi-row ``INSERT … RETURNING id`` per ``_ROWS_PER_INSERT`` messages."""
    now = timezone.now()
    quote = connection.ops.quote_name
    columns = ("room_id", "author_id", "body", "created", "client_id", "reply_to_id", "deleted")
    table_name = quote(Message._meta.db_table)
    created = connection.ops.adapt_datetimefield_value(now)
    if connection.vendor == "postgresql":
        if ids is None or len(ids) < len(messages):
            raise RuntimeError("the batch took fewer message ids than it has new messages")
        taken = list(ids[: len(messages)])
        # One statement of constant text whatever the batch size (psycopg converts a query's text once and
        # caches it; a VALUES list of 100 rows is new text every time), the rows as one JSON parameter
        # (``json_rows``).
        sql = (
            f"INSERT INTO {table_name} ({quote('id')}, {', '.join(quote(c) for c in columns)}) "  # noqa: S608 - quoted identifiers; values are parameters
            "SELECT i, r, a, b, %s, c, p, false FROM json_to_recordset(%s::json) "
            "AS t(i bigint, r bigint, a bigint, b text, c text, p bigint)"
        )
        rows = [{"i": pk, "r": m.room_id, "a": m.author_id, "b": m.body, "c": m.client_id, "p": m.reply_to_id}
                for pk, m in zip(taken, messages, strict=True)]  # fmt: skip
        with _array_cursor() as cursor:
            cursor.execute(sql, [created, json_rows(rows)])
        _mark_stored(messages, taken, now)
        return
    head = f"INSERT INTO {table_name} ({', '.join(quote(c) for c in columns)}) VALUES "  # noqa: S608 - quoted identifiers
    for start in range(0, len(messages), _ROWS_PER_INSERT):
        chunk = messages[start : start + _ROWS_PER_INSERT]
        params = []
        for message in chunk:
            params += (message.room_id, message.author_id, message.body, created, message.client_id)
            params += (message.reply_to_id, False)
        sql = head + ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(chunk)) + f" RETURNING {quote('id')}"
        with _array_cursor() as cursor:
            cursor.execute(sql, params)
            returned = [row[0] for row in cursor.fetchall()]
        if len(returned) != len(chunk):
            raise RuntimeError("this database cannot return ids from a multi-row INSERT (SQLite >= 3.35 can)")
        _mark_stored(chunk, returned, now)  # RETURNING lists the rows in VALUES order


def _mark_stored(messages: Sequence[Message], ids: Sequence[int], now: datetime) -> None:
    """Give inserted messages their ids and ``created``, as the ORM does after a save."""
    alias = connection.alias  # a lookup through Django's connection proxy each time: not once per message
    for message, pk in zip(messages, ids, strict=True):
        message.id = pk
        message.created = now
        message._state.adding = False
        message._state.db = alias


#: ``Message``'s columns in model order, for ``_new_message``.
_MESSAGE_ATTNAMES = tuple(f.attname for f in Message._meta.concrete_fields)


def _new_message(room: Room, write: MessageWrite, reply_to: Message | None) -> Message:
    """A new (unsaved) message of the batch, its room, author and parent cached as the ORM would after
    ``Message(room=…, author=…, reply_to=…)``. Built from its column values in model order: the keyword form
    sets every relation through its descriptor's checks, half of the cost of a message's row in a batch."""
    values = {
        "room_id": room.pk,
        "author_id": write.author.pk,
        "body": write.body,
        "client_id": write.client_id,
        "deleted": False,
        "reply_to_id": reply_to.pk if reply_to is not None else None,
    }
    message = Message(*(values.get(name) for name in _MESSAGE_ATTNAMES))
    _ROOM.set_cached_value(message, room)
    _AUTHOR.set_cached_value(message, write.author)
    if reply_to is not None:
        _REPLY_TO.set_cached_value(message, reply_to)
    return message


_ROOM, _AUTHOR, _REPLY_TO = Message.room.field, Message.author.field, Message.reply_to.field


_ROWS_PER_INSERT = 500  # 3,500 parameters per statement at most


State = tuple[set[tuple[int, int]], set[int], dict[int, int], set[tuple[int, int]], dict[int, int]]


def _batch_state(units: Sequence[Unit], cursor: CursorWrapper) -> Callable[[], State]:
    """Send the read of what the batch needs to know on ``cursor``; the returned function reads its answer (so
    on PostgreSQL it shares a round trip with the statements sent before it is called).

    What the batch needs to know, read under the room locks in ONE round trip (usually): the (room, user)
    memberships of its authors (and which of them own the room), the ids of stored messages with one of its
    (room, author, client_id), each room's newest message id and newest event number before the batch. One
    statement of ``UNION ALL``ed parts, every value a parameter: on a busy machine every round trip to
    PostgreSQL waits for its backend to be scheduled.

    - memberships: ``room IN (…) AND user IN (…)``;
    - repeats: an OR of exact triples, each one lookup in the unique (author, room, client_id) index (the
      ORM's three IN lists made SQLite probe their cross product: ~6 ms for 200 messages against ~0.4 ms);
    - newest ids: ``MAX(id)`` per room, one step down the (room, id) index on both databases; newest
      event numbers likewise down the unique (room, seq) index.
    """
    writes = [w for unit in units for w in unit]
    if not writes:
        return lambda: (set(), set(), {}, set(), {})
    room_ids = sorted({w.room.pk for w in writes})
    author_ids = sorted({w.author.pk for w in writes})
    keys = sorted({(w.room.pk, w.author.pk, w.client_id) for w in writes if w.client_id})
    q = connection.ops.quote_name
    message, membership = q(Message._meta.db_table), q(Membership._meta.db_table)
    room_event = q(RoomEvent._meta.db_table)
    room, user, author, client_id, pk = q("room_id"), q("user_id"), q("author_id"), q("client_id"), q("id")
    role, seq = q("role"), q("seq")
    # Only quoted identifiers and placeholders are formatted into the SQL below (noqa: S608).
    kind = f"CASE WHEN {role} = %s THEN 3 ELSE 0 END"  # 3: a member who owns the room
    if connection.vendor == "postgresql":
        # The same four parts with every list as an array: one statement of constant text, so psycopg converts
        # it once (cached) and PostgreSQL plans four small joins instead of a UNION of 2 + 2 x rooms SELECTs
        # and an OR of one term per message (its planning alone took milliseconds per batch).
        sql = (
            f"SELECT {kind}, {room}, {user} FROM {membership} "  # noqa: S608 - quoted identifiers; values are parameters
            f"WHERE {room} = ANY(%s::bigint[]) AND {user} = ANY(%s::bigint[]) "
            # One probe of the unique (author, room, client_id) index per key, whatever the statistics say (a
            # join was planned as a hash join over the whole table while its statistics were still small).
            f"UNION ALL SELECT 1, f.i, NULL FROM (SELECT (SELECT m.{pk} FROM {message} m WHERE m.{author} = k.a "
            f"AND m.{room} = k.r AND m.{client_id} = k.c) AS i FROM json_to_recordset(%s::json) "
            "AS k(a bigint, r bigint, c text)) AS f WHERE f.i IS NOT NULL "
            # The newest id of each room: one descent of the (room, id) index, from (room, +inf) backwards (the
            # row of the next lower room when the room has none: NULL). ``MAX(id) WHERE room = r`` left the
            # choice to the statistics: with a table analysed while small PostgreSQL read every row of every
            # room of the batch through the room index (4-9 ms per batch by 15,000 messages, and growing),
            # and with fresh ones it may walk the primary key backwards past every other room's messages.
            f"UNION ALL SELECT 2, r, (SELECT CASE WHEN m.{room} = r THEN m.{pk} END FROM {message} m "
            f"WHERE (m.{room}, m.{pk}) <= (r, 9223372036854775807) ORDER BY m.{room} DESC, m.{pk} DESC LIMIT 1) "
            "FROM unnest(%s::bigint[]) AS t(r) "
            f"UNION ALL SELECT 4, r, (SELECT MAX({seq}) FROM {room_event} WHERE {room} = r) "
            "FROM unnest(%s::bigint[]) AS t(r)"
        )
        # The keys as one JSON parameter (``json_rows``): three arrays cost psycopg a Python call per element.
        key_rows = json_rows([{"a": a, "r": r, "c": c} for r, a, c in keys])
        params = [Membership.Role.OWNER.value, room_ids, author_ids, key_rows, room_ids, room_ids]
        queries = [(sql, params)]
    else:
        parts: list[tuple[str, list]] = []  # (SELECT kind, a, b, its parameters)
        rooms_in, authors_in = ", ".join(["%s"] * len(room_ids)), ", ".join(["%s"] * len(author_ids))
        sql = (
            f"SELECT {kind}, {room}, {user} FROM {membership} WHERE {room} IN ({rooms_in}) AND {user} IN ({authors_in})"  # noqa: S608
        )
        parts.append((sql, [Membership.Role.OWNER.value, *room_ids, *author_ids]))
        term = f"({author} = %s AND {room} = %s AND {client_id} = %s)"
        for start in range(0, len(keys), _KEYS_PER_PART):
            chunk = keys[start : start + _KEYS_PER_PART]
            sql = f"SELECT 1, {pk}, NULL FROM {message} WHERE " + " OR ".join([term] * len(chunk))  # noqa: S608
            parts.append((sql, [v for r, a, c in chunk for v in (a, r, c)]))
        newest = f"SELECT 2, CAST(%s AS INTEGER), (SELECT MAX({pk}) FROM {message} WHERE {room} = %s)"  # noqa: S608
        parts.extend((newest, [room_id, room_id]) for room_id in room_ids)
        newest_seq = f"SELECT 4, CAST(%s AS INTEGER), (SELECT MAX({seq}) FROM {room_event} WHERE {room} = %s)"  # noqa: S608
        parts.extend((newest_seq, [room_id, room_id]) for room_id in room_ids)
        queries = []
        for start in range(0, len(parts), _PARTS_PER_QUERY):  # SQLite allows 500 SELECTs in one UNION
            chunk_parts = parts[start : start + _PARTS_PER_QUERY]
            union = " UNION ALL ".join(part for part, _ in chunk_parts)
            queries.append((union, [v for _, params in chunk_parts for v in params]))
    members: set[tuple[int, int]] = set()
    owners: set[tuple[int, int]] = set()
    repeated: set[int] = set()
    last_ids: dict[int, int] = {}
    last_seqs: dict[int, int] = {}
    rows: list[tuple] = []
    for query, query_params in queries[:-1]:  # SQLite, a large batch: the parts that did not fit in one
        cursor.execute(query, query_params)
        rows += cursor.fetchall()
    cursor.execute(*queries[-1])

    def read() -> State:
        for kind, a, b in [*rows, *cursor.fetchall()]:
            if kind in (0, 3):
                members.add((a, b))
                if kind == 3:
                    owners.add((a, b))
            elif kind == 1:
                repeated.add(a)
            elif kind == 4:
                if b is not None:
                    last_seqs[a] = b
            elif b is not None:
                last_ids[a] = b
        return members, repeated, last_ids, owners, last_seqs

    return read


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
