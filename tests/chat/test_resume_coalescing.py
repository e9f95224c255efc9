"""Coalesced since-id resumes against the real replay query: every waiter gets exactly what its own query would."""

from __future__ import annotations

import asyncio
import random

import pytest

from chat import services
from chat.models import Message
from chat.resume_coalescing import coalesced_resume
from chat.stomp_destinations import _replay_read

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def room_with_messages(make_user):
    alice = make_user("alice")
    room = services.room_create(creator=alice, name="General", slug="general")
    Message.objects.bulk_create([Message(room=room, author=alice, body=f"m{n}") for n in range(40)])
    return room


@pytest.mark.parametrize("limit", [500, 7])  # whole replays, and replays cut to the newest `limit` (resume-gap)
async def test_many_concurrent_resumes_of_one_room_share_queries_and_each_gets_exactly_its_own(
    room_with_messages, limit
):
    ids = [m async for m in Message.objects.filter(room=room_with_messages).order_by("id").values_list("id", flat=True)]
    resumes = coalesced_resume(_replay_read)
    rng = random.Random(7)
    sinces = [rng.choice([0, ids[-1] + 5, *ids]) for _ in range(300)]
    got = await asyncio.gather(*(resumes.fetch(("general", limit), since) for since in sinces))
    for since, (messages, truncated, reached, _) in zip(sinces, got, strict=True):
        own = await _replay_read("general", since, limit)
        assert ([m["id"] for m in messages], truncated, reached) == ([m["id"] for m in own[0]], own[1], own[2])
        expected = [i for i in ids if i > since]
        assert [m["id"] for m in messages] == expected[-limit:]  # once each, in order
        assert truncated == (len(expected) > limit)
    assert resumes.queries <= 3  # 300 resumes, not 300 queries


async def test_each_resume_learns_where_to_go_live_from_the_shared_query_up_to_date_ones_included(make_user):
    """The room event number of the reached message's creation (where the resume goes live) comes with the
    shared query's result, for resumers with messages to replay and for those already up to date alike."""
    from channels.db import database_sync_to_async

    from chat.models import RoomEvent

    @database_sync_to_async
    def room_with_events() -> tuple[list[int], dict[int, int]]:
        alice = make_user("alice")
        room = services.room_create(creator=alice, name="Events", slug="events")
        ids = [services.message_create(room=room, author=alice, body=f"m{i}")[0].pk for i in range(5)]
        created = RoomEvent.objects.filter(message_id__in=ids, kind=RoomEvent.Kind.CREATED)
        return ids, dict(created.values_list("message_id", "seq"))

    ids, seq_of = await room_with_events()
    assert len(seq_of) == 5
    resumes = coalesced_resume(_replay_read)
    sinces = [ids[0], ids[2], ids[-1], ids[-1], ids[-1] + 100]
    got = await asyncio.gather(*(resumes.fetch(("events", 50), since) for since in sinces))
    for since, (messages, truncated, reached, reached_seq) in zip(sinces, got, strict=True):
        assert [m["id"] for m in messages] == [i for i in ids if i > since]
        assert (truncated, reached, reached_seq) == (False, ids[-1], seq_of[ids[-1]])
        assert [m["_event_seq"] for m in messages] == [seq_of[m["id"]] for m in messages]
    assert resumes.queries == 1
    assert await _replay_read("nowhere", 0, 50) == ([], False, 0, 0)
