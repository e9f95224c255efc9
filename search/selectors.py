"""Search reads: which rooms a user may search (their memberships, now), and one page of results."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chat.exceptions import NotFound
from chat.models import Membership, Message
from chat.selectors import messages_for_json
from search.backends import Bounds, backend, segments
from search.query import Query

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@dataclass(frozen=True)
class SearchHit:
    message: Message
    highlight: list[dict]  # {"text", "match"} pieces of the body


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    next_cursor: int | None  # pass as ``cursor`` for the next (older) page


def searchable_room_ids(*, user: User, room_slug: str | None = None) -> list[int]:
    """The rooms whose messages ``user`` may search: exactly those they are a member of at this moment
    (public rooms they joined, their private rooms and DMs). A named room must be one of them."""
    memberships = Membership.objects.filter(user=user)
    if room_slug is not None:
        room_id = memberships.filter(room__slug=room_slug).values_list("room_id", flat=True).first()
        if room_id is None:
            raise NotFound(f"no room {room_slug!r} that you are a member of")
        return [room_id]
    return sorted(memberships.values_list("room_id", flat=True))


def _first_id_since(moment: dt.datetime) -> int | None:
    """The first message stored at or after ``moment``: ids grow with time, so a date bound is an id bound."""
    return Message.objects.filter(created__gte=moment).order_by("created", "id").values_list("id", flat=True).first()


def messages_search(
    *,
    user: User,
    query: Query,
    limit: int,
    room_slug: str | None = None,
    since: dt.datetime | None = None,
    before: dt.datetime | None = None,
    cursor: int | None = None,
) -> SearchPage:
    """The user's messages matching ``query``, newest first, ``limit`` per page; older than ``cursor``."""
    room_ids = searchable_room_ids(user=user, room_slug=room_slug)
    lowest = below = None
    if since is not None:
        lowest = _first_id_since(since)
        if lowest is None:  # nothing was stored since then
            return SearchPage([], None)
    if before is not None:
        below = _first_id_since(before)
    if cursor is not None:
        below = cursor if below is None else min(below, cursor)
    if not room_ids:
        return SearchPage([], None)
    engine = backend()
    ids = engine.search(query=query, room_ids=room_ids, bounds=Bounds(lowest, below), limit=limit + 1)
    more = len(ids) > limit
    ids = ids[:limit]
    # Everything message_json reads (attachments, reactions, the replied-to message) in a few queries.
    found = messages_for_json(Message.objects.filter(pk__in=ids)).in_bulk()
    # Read once more under the membership rule: the index row and the message agree on the room, and a
    # room left between the two reads is not shown.
    allowed = set(room_ids)
    messages = [found[pk] for pk in ids if pk in found and found[pk].room_id in allowed]
    ranges = engine.highlights(query=query, bodies={m.pk: m.body for m in messages})
    hits = [SearchHit(m, segments(m.body, ranges.get(m.pk, []))) for m in messages]
    return SearchPage(hits, ids[-1] if more and ids else None)
