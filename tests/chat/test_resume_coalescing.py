"""Coalesced since-id resumes against the real replay query: every waiter gets exactly what its own query would."""

from __future__ import annotations

import asyncio
import random

import pytest

from chat import services
from chat.models import Message
from chat.resume_coalescing import coalesced_resume
from chat.stomp_destinations import _messages_after

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
    resumes = coalesced_resume(_messages_after)
    rng = random.Random(7)
    sinces = [rng.choice([0, ids[-1] + 5, *ids]) for _ in range(300)]
    got = await asyncio.gather(*(resumes.fetch(("general", limit), since) for since in sinces))
    for since, (messages, truncated, reached) in zip(sinces, got, strict=True):
        own = await _messages_after("general", since, limit)
        assert ([m["id"] for m in messages], truncated, reached) == ([m["id"] for m in own[0]], own[1], own[2])
        expected = [i for i in ids if i > since]
        assert [m["id"] for m in messages] == expected[-limit:]  # once each, in order
        assert truncated == (len(expected) > limit)
    assert resumes.queries <= 3  # 300 resumes, not 300 queries
