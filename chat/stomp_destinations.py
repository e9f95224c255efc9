"""Chat over STOMP: where a room SEND is persisted and a room SUBSCRIBE is authorised, resumed and counted.

- ``SEND /app/rooms.<slug>``: JSON ``{"body", "client_id", "attachments": [upload ids], "reply_to": id}``
  (``content-type: application/json``) or plain text with an optional ``client-id`` header. Validated
  first, then stored by the process's chat writer in a batch (chat/writer); the broadcast to
  ``/topic/rooms.<slug>`` follows the batch's commit and the RECEIPT follows the broadcast, so a RECEIPT
  always means "in the database". A mistake of the user (empty, too long, not a member, an upload not
  theirs or taken), a full writer queue (``server-busy``) or a failed batch (``write-failed``) is refused
  without closing the connection: no RECEIPT, and an error on ``/user/queue/errors``. Inside a STOMP
  transaction every such SEND is validated at COMMIT, then all are stored in one batch, or none (the
  COMMIT is then refused the same way, with no RECEIPT).
- ``SEND /app/rooms.<slug>.edit`` ``{"id", "body"}``, ``.delete`` ``{"id"}``, ``.react`` ``{"id", "emoji"}``:
  changes of a stored message through the same writer (same batches, same RECEIPT rule, same refusals on
  ``/user/queue/errors``: ``not-found``, ``forbidden``, ``invalid``). Every MESSAGE of the room topic
  carries ``event`` (message, edit, delete, reaction) and ``event-seq`` (the room's event number).
- ``SUBSCRIBE /topic/rooms.<slug>`` (and its ``.presence`` and ``.typing`` topics): members only; a
  public room is joined on subscribe. ``since-seq: <n>`` replays every room event after n (each with the
  message's current state), then live ones, with no gap and no duplicate; past ``CHAT_RESUME_MAX``
  events only the newest are replayed and the first carries ``resume-gap: <its event-seq>`` (reload the
  history from REST). ``since-id: <id>`` (older clients) replays every stored message after that id,
  then live events; past ``CHAT_RESUME_MAX`` messages only the newest are replayed and the first
  carries ``resume-gap: <oldest replayed id>`` so the client fetches the rest from the REST history.
- Presence: the first session of a user subscribing to a room topic publishes ``join`` on the presence
  topic, their last one leaving publishes ``leave`` (debounced: a quick leave and re-join sends
  nothing); subscribing to the presence topic starts with a ``snapshot``.
- ``SEND /app/rooms.<slug>.typing``: ``{"typing": true|false}``, relayed to the typing topic, not stored.
- ``SEND /app/dm.<username>``: a direct message (the pair's private room is created on first use).
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import Sequence
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat import selectors, services
from chat.api.serializers import message_json
from chat.destinations import (
    DELETE_SEND,
    EDIT_SEND,
    PRESENCE_TOPIC,
    REACT_SEND,
    ROOM_SEND,
    ROOM_TOPIC,
    TYPING_SEND,
    TYPING_TOPIC,
    room_topic,
    typing_topic,
)
from chat.exceptions import ChatError, NotFound
from chat.models import Message, Room, RoomEvent
from chat.presence import presence
from chat.publishing import event_headers
from chat.resume_coalescing import coalesced_resume
from chat.writer import MessageWrite, get_writer
from chat.writer.rooms import public_rooms
from chat.writer.store import EVENT_NAMES
from stompengine import (
    Completion,
    Denied,
    Prepared,
    Rejected,
    Replay,
    SendContext,
    SubscribeContext,
    app_destination,
    app_prepare,
    broker,
    on_subscribe,
    on_unsubscribe,
    sequence_repair,
    subscription_guard,
    subscription_replay,
)
from stompengine.coalesce import BatchCoalescer

DM_SEND = re.compile(r"/app/dm\.(?P<username>[\w.@+-]{1,150})")


def read_only(function: Any) -> Any:
    """A database read that need not queue on the process's one thread-sensitive database thread."""
    return database_sync_to_async(function, thread_sensitive=False)


# --- Sending --------------------------------------------------------------------------------------------


def parse_chat_body(ctx: SendContext) -> tuple[Any, str | None, Any, Any]:
    """(body, client_id, attachments, reply_to) of a chat SEND: a JSON object when the content type says
    so, else plain text (which carries no attachments and replies to nothing)."""
    content_type = (ctx.header("content-type") or "").split(";")[0].strip().lower()
    text = ctx.text
    if content_type == "application/json":
        try:
            data = json.loads(text)
        except ValueError:
            raise Rejected("the body is not valid JSON", code="invalid") from None
        if not isinstance(data, dict):
            raise Rejected('a chat message is a JSON object: {"body": "…", "client_id": "…"}', code="invalid")
        return data.get("body", ""), data.get("client_id"), data.get("attachments"), data.get("reply_to")
    return text, ctx.header("client-id"), None, None


@read_only
def _room_message_prepare(
    slug: str, user: Any, body: Any, client_id: Any, attachments: Any, reply_to: Any = None
) -> MessageWrite:
    room = selectors.room_visible_get(slug=slug, user=user)
    return services.message_prepare(
        room=room, author=user, body=body, client_id=client_id, attachments=attachments, reply_to=reply_to
    )


def _direct_message_prepare(
    username: str, user: Any, body: Any, client_id: Any, attachments: Any, reply_to: Any = None
) -> MessageWrite:
    # Bad input creates no conversation.
    services.message_validate(body=body, client_id=client_id, attachments=attachments)
    services.reply_to_parse(reply_to)
    room, _ = services.direct_room_get_or_create(user=user, other_username=username)
    return services.message_prepare(
        room=room, author=user, body=body, client_id=client_id, attachments=attachments, reply_to=reply_to
    )


async def _commit(writes: Sequence[MessageWrite]) -> None:
    """Store the writes of one SEND or one STOMP transaction, all or none (the RECEIPT follows the commit)."""
    try:
        await get_writer().submit(writes)
    except ChatError as exc:
        raise Rejected(str(exc), code=exc.code) from None


# Rooms a connection's live subscription to ``/topic/rooms.<slug>`` proved it may post to: the subscribe
# guard read the room and checked membership (or joined the public room) moments ago. Trusted by the room
# SEND's validation only while that subscription lives: removing a member (chat/ops.py leave_room_here)
# drops it, and the batch re-checks every room and private membership under the room lock anyway.
_proven: weakref.WeakKeyDictionary[Any, dict[str, tuple[str, Room]]] = weakref.WeakKeyDictionary()


def _room_proven(connection: Any, slug: str) -> Room | None:
    """The room if this connection's subscription that proved it is still live (by its subscription id)."""
    rooms = _proven.get(connection)
    entry = rooms.get(slug) if rooms else None
    if entry is None:
        return None
    if not connection.is_subscribed(entry[0], room_topic(slug)):
        del rooms[slug]  # unsubscribed, or dropped because the user left or was removed: prove it again
        return None
    return entry[1]


@app_prepare(ROOM_SEND)
async def prepare_room_message(ctx: SendContext, slug: str) -> Prepared:
    """Validate a chat SEND (body, client_id, room visibility) before it joins a write batch.

    Without a query when this connection's live subscription proved the room (see ``_proven``), or the
    room is public and was seen in the last seconds; the batch re-checks both under the room lock.
    """
    body, client_id, attachments, reply_to = parse_chat_body(ctx)
    try:
        room = _room_proven(ctx.connection, slug)
        if attachments:
            # Uploads are read from the database (whose, which room, unused): never the fast paths below.
            write = await _room_message_prepare(slug, ctx.user, body, client_id, attachments, reply_to)
        elif room is not None:
            body, client_id = services.message_validate(body=body, client_id=client_id)
            reply = services.reply_to_parse(reply_to)  # the batch checks it is a message of this room
            write = MessageWrite(room=room, author=ctx.user, body=body, client_id=client_id, reply_to=reply)
        elif (room := public_rooms.get(slug)) is not None:  # nothing to read (the batch re-checks)
            write = services.message_prepare(
                room=room, author=ctx.user, body=body, client_id=client_id, reply_to=reply_to
            )
        else:
            # A read only (a public room is joined by the batch itself), so it need not wait for the db thread.
            write = await _room_message_prepare(slug, ctx.user, body, client_id, None, reply_to)
            if not write.room.is_private:
                public_rooms.put(write.room)
    except ChatError as exc:
        raise Rejected(str(exc), code=exc.code, destination=ctx.destination, client_id=client_id) from None
    return Prepared(write, _commit)


@app_prepare(DM_SEND)
async def prepare_direct_message(ctx: SendContext, username: str) -> Prepared:
    """Validate a direct message (and create the pair's room on first use) before it joins a batch."""
    body, client_id, attachments, reply_to = parse_chat_body(ctx)
    try:
        write = await database_sync_to_async(_direct_message_prepare)(
            username, ctx.user, body, client_id, attachments, reply_to
        )
    except ChatError as exc:
        raise Rejected(str(exc), code=exc.code, destination=ctx.destination, client_id=client_id) from None
    return Prepared(write, _commit)


def _submitted(ctx: SendContext, prepared: Prepared) -> Completion:
    """The SEND's ``Completion``: the writer's own future for its batch (no task per SEND); a refusal
    names the SEND's destination and client_id."""
    client_id = prepared.item.client_id

    def refuse(exc: ChatError) -> Rejected:
        return Rejected(str(exc), code=exc.code, destination=ctx.destination, client_id=client_id)

    try:
        return Completion(get_writer().submit_nowait((prepared.item,), refuse=refuse))
    except ChatError as exc:  # the writer's queue is full
        raise refuse(exc) from None


@app_destination(ROOM_SEND)
async def send_to_room(ctx: SendContext, slug: str) -> Completion:
    """Store a chat message through the writer; the broadcast follows the commit, the RECEIPT follows both.

    Validated now, in frame order; the write is handed back as a ``Completion``, so the connection reads its
    next frames while the batch is stored (the writer's FIFO keeps one connection's messages in order).
    """
    return _submitted(ctx, await prepare_room_message(ctx, slug))


@app_destination(DM_SEND)
async def send_direct_message(ctx: SendContext, username: str) -> Completion:
    """A direct message to ``username``, in the private room of the two users."""
    return _submitted(ctx, await prepare_direct_message(ctx, username))


# --- Changing stored messages (edit, delete, react) ----------------------------------------------------------


def _change_data(ctx: SendContext) -> dict[str, Any]:
    """The JSON object of an edit, delete or react SEND (whatever its content type says)."""
    try:
        data = json.loads(ctx.text or "null")
    except ValueError:
        raise Rejected("the body is not valid JSON", code="invalid", destination=ctx.destination) from None
    if not isinstance(data, dict):
        raise Rejected(
            'the body is a JSON object: {"id": <message id>, …}', code="invalid", destination=ctx.destination
        )
    return data


@read_only
def _visible_room(slug: str, user: Any) -> Room:
    return selectors.room_visible_get(slug=slug, user=user)


async def _change(ctx: SendContext, slug: str, make: Any) -> Completion:
    """Validate a change now (in frame order), store it through the writer; the RECEIPT follows its broadcast."""
    data = _change_data(ctx)
    try:
        room = _room_proven(ctx.connection, slug) or await _visible_room(slug, ctx.user)
        write = make(room, data)
    except ChatError as exc:
        raise Rejected(str(exc), code=exc.code, destination=ctx.destination) from None

    async def commit() -> None:
        try:
            await _commit([write])
        except Rejected as exc:
            raise Rejected(exc.detail, code=exc.code, destination=ctx.destination) from None

    return Completion(asyncio.ensure_future(commit()))


@app_destination(EDIT_SEND)
async def edit_message(ctx: SendContext, slug: str) -> Completion:
    """``{"id", "body"}``: the author replaces the text (the previous one is kept in the history)."""
    return await _change(ctx, slug, lambda room, data: services.message_edit_prepare(
        room=room, author=ctx.user, message_id=data.get("id"), body=data.get("body")))  # fmt: skip


@app_destination(DELETE_SEND)
async def delete_message(ctx: SendContext, slug: str) -> Completion:
    """``{"id"}``: the author or the room's owner leaves a tombstone."""
    return await _change(ctx, slug, lambda room, data: services.message_delete_prepare(
        room=room, author=ctx.user, message_id=data.get("id")))  # fmt: skip


@app_destination(REACT_SEND)
async def react_to_message(ctx: SendContext, slug: str) -> Completion:
    """``{"id", "emoji"}``: toggle the caller's reaction (members only; one emoji; 20 distinct at most)."""
    return await _change(ctx, slug, lambda room, data: services.reaction_prepare(
        room=room, author=ctx.user, message_id=data.get("id"), emoji=data.get("emoji")))  # fmt: skip


@read_only
def _is_member(slug: str, user: Any) -> bool:
    room = Room.objects.filter(slug=slug).first()
    return room is not None and selectors.user_is_member(room=room, user=user)


@app_destination(TYPING_SEND)
async def typing(ctx: SendContext, slug: str) -> None:
    """Relay a typing indicator to the room's members; nothing is stored."""
    if not await _is_member(slug, ctx.user):
        raise Rejected(f"no room {slug!r} that you can see", code="not-found")
    state = True
    if ctx.body.strip():
        try:
            state = bool(json.loads(ctx.text).get("typing", True))
        except (ValueError, AttributeError):
            state = True
    broker.publish(typing_topic(slug), {"user": ctx.user.get_username(), "typing": state})


# --- Subscribing ----------------------------------------------------------------------------------------


@read_only
def _members_among(slug: str, user_ids: list[int]) -> tuple[Room | None, frozenset[int]]:
    return selectors.room_members_among(slug=slug, user_ids=user_ids)


def _member_verdict(slug: str, read: tuple[Room | None, frozenset[int]], user_id: int) -> Room | None:
    room, members = read
    return services.room_member_verdict(slug=slug, room=room, is_member=user_id in members)


# A reconnect storm is thousands of SUBSCRIBEs to the same few rooms: the membership checks of one room that
# arrive together are read in one query (beside the database thread), each answered as room_enter would.
_member_checks = BatchCoalescer(_members_among, _member_verdict)


@database_sync_to_async
def _enter_room(slug: str, user: Any) -> Room:
    return services.room_enter(slug=slug, user=user)


async def members_only(ctx: SubscribeContext, slug: str) -> None:
    """A room's topics are for its members; public rooms are joined on subscribe. Unknown looks like private.

    A member (every client of a reconnect storm) is checked by a read beside the database thread, shared
    with the other checks of the room arriving together; only joining a public room (a write) queues on
    that thread.
    """
    try:
        room = await _member_checks.fetch(slug, ctx.user.pk) or await _enter_room(slug, ctx.user)
    except NotFound:
        raise Denied("Forbidden", f"no room {slug!r} that you can see", code="not-found") from None
    except ChatError as exc:  # a member of an archived room (closed, not deleted)
        raise Denied("Forbidden", str(exc), code=exc.code) from None
    if ctx.destination == room_topic(slug):
        _proven.setdefault(ctx.connection, {})[slug] = (ctx.subscription_id, room)


for _template in (ROOM_TOPIC, PRESENCE_TOPIC, TYPING_TOPIC):
    subscription_guard(_template)(members_only)


@read_only
def _newest_seq(slug: str) -> int:
    return selectors.room_newest_seq(room_id=Room.objects.filter(slug=slug).values("pk")[:1])


@subscription_guard(ROOM_TOPIC)
async def sequence_known(ctx: SubscribeContext, slug: str) -> None:
    """Before a process first subscribes to a room, tell its sequencer where the room's events stand.

    Otherwise the first event this process hears becomes its baseline, and an event with a lower number
    published a moment later by another process would be delivered after it, out of order.
    """
    sequencer = ctx.connection.broker.sequencer
    if not sequencer.knows(ctx.destination):
        newest = await _newest_seq(slug)
        if not sequencer.knows(ctx.destination):
            sequencer.seed(ctx.destination, newest)


@read_only
def _replay_read(slug: str, since: int, limit: int) -> tuple[list[dict], bool, int, int]:
    """The newest ``limit`` messages after ``since`` (oldest first, current state), whether more were left
    out, the id the replay reaches (its last message, or with none the newest stored id not above ``since``:
    never beyond what exists, or a made-up ``since-id`` would hide every message to come) and the room
    event number of that message's creation (0: older than the event stream), after which ``resume_room``
    goes live. Each message dict carries its own creation number under ``_event_seq``.

    Two queries at most (the room by its slug inside them): a reconnect storm runs this once per burst
    of a room's resumes, and its number used to cost every up-to-date resumer a read of its own."""
    messages_of_room = Message.objects.filter(room__slug=slug)
    newest_first = list(
        selectors.messages_for_json(messages_of_room.filter(id__gt=since))
        .annotate(created_seq=selectors.creation_seq_subquery())
        .order_by("-id")[: limit + 1]
    )
    truncated = len(newest_first) > limit
    if newest_first:
        reached, reached_seq = newest_first[0].pk, newest_first[0].created_seq or 0
    else:
        newest = (
            messages_of_room.order_by("-id")
            .annotate(created_seq=selectors.creation_seq_subquery())
            .values_list("id", "created_seq")
            .first()
        )
        reached, reached_seq = (newest[0], newest[1] or 0) if newest else (0, 0)
    messages = [{**message_json(m), "_event_seq": m.created_seq or 0} for m in reversed(newest_first[:limit])]
    return messages, truncated, reached, reached_seq


@read_only
def _events_after(slug: str, since: int, limit: int) -> tuple[list[tuple[dict, dict[str, str]]], bool, int]:
    """The newest ``limit`` room events after number ``since`` (oldest first) as (body, headers) with each
    message's current state, whether older ones were left out, and the number the replay reaches (its
    last event, or with none ``since`` itself but never beyond the room's newest: a made-up number must
    not hide the events to come)."""
    room = Room.objects.get(slug=slug)
    rows = RoomEvent.objects.filter(room=room, seq__gt=since).order_by("-seq").values_list("seq", "kind", "message_id")
    newest_first = list(rows[: limit + 1])
    truncated = len(newest_first) > limit
    events = list(reversed(newest_first[:limit]))
    reached = events[-1][0] if events else min(since, selectors.room_newest_seq(room_id=room.pk))
    return [(body, headers) for _, body, headers in _event_frames(events)], truncated, reached


@read_only
def _events_between(slug: str, after: int, until: int) -> list[tuple[int, dict, dict[str, str]]]:
    """Room events numbered after ``after`` up to ``until`` (at most the newest ``CHAT_RESUME_MAX``), oldest
    first, as (number, body, headers)."""
    rows = RoomEvent.objects.filter(room__slug=slug, seq__gt=after, seq__lte=until).order_by("-seq")
    events = list(reversed(rows.values_list("seq", "kind", "message_id")[: settings.CHAT_RESUME_MAX]))
    return _event_frames(events)


def _event_frames(events: list[tuple[int, str, int | None]]) -> list[tuple[int, dict, dict[str, str]]]:
    """(number, body, headers) of each (seq, kind, message_id) row, with its message's current state; an
    event whose message was removed outright (a cascade) is left out: its number is covered, nothing to show."""
    ids = {message_id for _, _, message_id in events if message_id}
    messages = {m.pk: m for m in selectors.messages_for_json(Message.objects.filter(pk__in=ids))}
    frames: list[tuple[int, dict, dict[str, str]]] = []
    for seq, kind, message_id in events:
        message = messages.get(message_id)
        if message is None:
            continue
        body = message_json(message)
        if kind == RoomEvent.Kind.REACTION:
            body = {"id": message.pk, "reactions": body["reactions"]}
        frames.append((seq, body, dict(event_headers(EVENT_NAMES[kind], seq))))
    return frames


@sequence_repair(ROOM_TOPIC)
async def room_events_missed(after: int, until: int, slug: str) -> list[tuple[int, dict, dict[str, str]]]:
    """Events of a room that a process never heard through the bus (their publisher died after committing
    them, maybe with their RECEIPTs already out): its subscribers get them from the database, in order."""
    return await _events_between(slug, after, until)


# A reconnect storm resumes a room from thousands of connections at once: one query per room serves them all.
_resumes = coalesced_resume(_replay_read)


@subscription_replay(ROOM_TOPIC)
async def resume_room(ctx: SubscribeContext, slug: str) -> Replay | None:
    """``since-seq``: room events after it; ``since-id``: stored messages after it; then live ones, none twice."""
    raw_seq = ctx.header("since-seq")
    if raw_seq is not None and raw_seq != "":
        try:
            since_seq = int(raw_seq)
        except ValueError:
            raise Denied(
                "invalid header", "since-seq must be an event number (a whole number)", code="invalid"
            ) from None
        events, truncated, reached = await _events_after(slug, max(since_seq, 0), settings.CHAT_RESUME_MAX)
        if truncated and events:
            events[0] = (events[0][0], {**events[0][1], "resume-gap": events[0][1]["event-seq"]})
        return Replay(messages=events, after_seq=reached)
    raw = ctx.header("since-id")
    if raw is None or raw == "":
        return None
    try:
        since = int(raw)
    except ValueError:
        raise Denied("invalid header", "since-id must be a message id (a whole number)", code="invalid") from None
    messages, truncated, _, after = await _resumes.fetch((slug, settings.CHAT_RESUME_MAX), max(since, 0))
    replay: list[tuple[Any, dict[str, str]]] = []
    for message in messages:
        body = {k: v for k, v in message.items() if k != "_event_seq"}
        replay.append((body, dict(event_headers("message", message.get("_event_seq", 0)))))
    if truncated and replay:
        replay[0] = (replay[0][0], {**replay[0][1], "resume-gap": str(messages[0]["id"])})
    # Room topics are published with the room's event number as sequence (chat/publishing.py): live events
    # up to the creation of the reached message (``after``) are in the replay (events commit in number
    # order), later ones come live. An edit of a replayed message committed meanwhile may come live too: it
    # carries the message's whole state, so applying it again changes nothing.
    return Replay(messages=replay, after_seq=after)


@subscription_replay(PRESENCE_TOPIC)
async def presence_snapshot(ctx: SubscribeContext, slug: str) -> Replay:
    """Who is online now, before the join/leave events."""
    return Replay(messages=[({"type": "snapshot", "users": await presence().online(slug)}, {})])


@on_subscribe(ROOM_TOPIC)
async def user_entered(ctx: SubscribeContext, slug: str) -> None:
    """Count the session; the user's first one announces ``join`` (chat/presence.py)."""
    await presence().enter(slug, ctx.user.get_username())


@on_unsubscribe(ROOM_TOPIC)
async def user_left(connection: Any, destination: str, slug: str) -> None:
    """Uncount the session after the debounce window; the user's last one announces ``leave``."""
    await presence().leave(slug, connection.user.get_username())
